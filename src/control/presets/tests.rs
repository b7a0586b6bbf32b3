//! The preset store's tests: names, the index and its caps, and the
//! writer thread.

use super::*;

fn state() -> State {
    State::from_config(&crate::config::Config::default())
}

fn name(n: &str) -> PresetName {
    PresetName::parse(n).unwrap()
}

#[test]
fn names_that_could_leave_the_folder_are_refused() {
    for bad in [
        "",
        "../x",
        "a/b",
        "a.b",
        "..",
        "x\\y",
        "é",
        " ",
        &"a".repeat(65),
    ] {
        assert!(PresetName::parse(bad).is_err(), "{bad:?} accepted");
    }
    for good in ["a", "My preset_1", "kick-heavy", &"a".repeat(64)] {
        assert!(PresetName::parse(good).is_ok(), "{good:?} refused");
    }
}

#[test]
fn saved_presets_are_listed_read_back_and_deleted() {
    let d = tempfile::tempdir().unwrap();
    let mut s = PresetStore::open(d.path());
    s.save(&name("one"), &state()).unwrap();
    let l = s.list();
    assert_eq!(l.items.len(), 1);
    assert_eq!(l.items[0].name, "one");
    assert!(!l.truncated);
    let text = s.read(&name("one")).unwrap();
    assert!(text.contains("[dsp.low]"), "{text}");
    assert!(!text.contains("snapshot"), "{text}");
    assert!(s.read(&name("two")).is_err());
    // The index is rebuilt from the folder at the next start.
    let again = PresetStore::open(d.path());
    assert_eq!(again.list().items.len(), 1);
    s.delete(&name("one")).unwrap();
    assert!(s.list().items.is_empty());
    assert!(!dir(d.path()).join("one.toml").exists());
    assert!(s.delete(&name("one")).is_err());
}

#[test]
fn the_count_cap_refuses_new_names_but_allows_overwrites() {
    let d = tempfile::tempdir().unwrap();
    let mut s = PresetStore::open(d.path());
    for i in 0..MAX_PRESETS {
        s.save(&name(&format!("p{i:04}")), &state()).unwrap();
    }
    let e = s.save(&name("one more"), &state()).unwrap_err();
    assert!(e.contains("delete one first"), "{e}");
    s.save(&name("p0000"), &state()).unwrap();
    assert_eq!(s.list().items.len(), MAX_PRESETS);
    s.delete(&name("p0001")).unwrap();
    s.save(&name("one more"), &state()).unwrap();
}

#[test]
fn a_folder_over_the_cap_is_indexed_up_to_it_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let p = dir(d.path());
    std::fs::create_dir_all(&p).unwrap();
    for i in 0..(MAX_PRESETS + 50) {
        std::fs::write(p.join(format!("x{i:05}.toml")), "[fft]\nenabled = true\n").unwrap();
    }
    std::fs::write(p.join("huge.toml"), vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
    std::os::unix::fs::symlink("/dev/zero", p.join("zero.toml")).unwrap();
    let s = PresetStore::open(d.path());
    let l = s.list();
    assert_eq!(l.items.len(), MAX_PRESETS);
    assert!(l.truncated);
    assert!(l.items.iter().all(|i| i.name.starts_with('x')));
}

/// The reply the writer sends for `client`, within a few seconds.
fn reply(rx: &std::sync::mpsc::Receiver<Reply>, client: u64) -> Vec<super::super::Response> {
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the writer answers");
    assert_eq!(r.client, client);
    r.responses
}

#[test]
fn the_writer_saves_in_order_answers_the_client_and_serves_reads_meanwhile() {
    use super::super::Response;
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut s = PresetStore::open(d.path());
    s.start_writer(tx);
    assert_eq!(s.save_for(7, &name("one"), &state()), Ok(Answer::Later));
    // Indexed at once, and read back (from memory or the file).
    assert_eq!(s.list().items.len(), 1);
    assert!(s.read(&name("one")).unwrap().contains("[dsp.low]"));
    match &reply(&rx, 7)[..] {
        [Response::Presets(l)] => assert_eq!(l.items[0].name, "one"),
        other => panic!("{other:?}"),
    }
    assert!(dir(d.path()).join("one.toml").is_file());
    // A delete handed over after a save of the same name removes the
    // saved file: the writer keeps their order.
    assert_eq!(s.save_for(8, &name("two"), &state()), Ok(Answer::Later));
    assert_eq!(s.delete_for(9, &name("two")), Ok(Answer::Later));
    assert!(s.read(&name("two")).is_err());
    assert!(matches!(&reply(&rx, 8)[..], [Response::Presets(_)]));
    match &reply(&rx, 9)[..] {
        [Response::Presets(l)] => assert_eq!(l.items.len(), 1),
        other => panic!("{other:?}"),
    }
    s.close();
    assert!(!dir(d.path()).join("two.toml").exists());
    assert!(s.writer.is_none());
    let names = |l: PresetList| l.items.into_iter().map(|i| i.name).collect::<Vec<_>>();
    assert_eq!(names(PresetStore::open(d.path()).list()), names(s.list()));
}

#[test]
fn a_write_that_fails_is_reported_and_taken_out_of_the_index() {
    use super::super::Response;
    let d = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut s = PresetStore::open(d.path());
    s.save(&name("kept"), &state()).unwrap();
    s.start_writer(tx);
    // The file's place is taken by a directory: the rename fails.
    std::fs::create_dir(dir(d.path()).join("blocked.toml")).unwrap();
    assert_eq!(s.save_for(3, &name("blocked"), &state()), Ok(Answer::Later));
    assert_eq!(s.list().items.len(), 2);
    match &reply(&rx, 3)[..] {
        [Response::Error(e)] => assert!(e.contains("cannot save preset \"blocked\""), "{e}"),
        other => panic!("{other:?}"),
    }
    s.close();
    let names: Vec<_> = s.list().items.into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["kept"]);
    // What is left is what is on disk, to the byte.
    let on_disk = std::fs::metadata(dir(d.path()).join("kept.toml"))
        .unwrap()
        .len();
    assert_eq!(s.index[&name("kept")].bytes, on_disk);
}
