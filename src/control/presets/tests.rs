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

#[test]
fn a_load_reads_the_text_indexed_at_open_and_never_the_disk() {
    let d = tempfile::tempdir().unwrap();
    let p = dir(d.path());
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("hand.toml"), "[dsp.low]\ntau-s = 0.3\n").unwrap();
    // Not offered: invalid UTF-8, a FIFO (opening it for reading would
    // wait for a writer), a directory.
    std::fs::write(p.join("latin1.toml"), b"# caf\xe9\n[fft]\n").unwrap();
    nix::unistd::mkfifo(&p.join("fifo.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::create_dir(p.join("dir.toml")).unwrap();
    let mut s = PresetStore::open(d.path());
    let l = s.list();
    assert_eq!(
        l.items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["hand"]
    );
    s.save(&name("saved"), &state()).unwrap();
    // The files change or go after the index was built: a load still gives
    // what was indexed (it never reads the disk, which may be slow).
    std::fs::write(p.join("hand.toml"), "[dsp.low]\ntau-s = 9\n").unwrap();
    std::fs::remove_file(p.join("saved.toml")).unwrap();
    let text = s.read(&name("hand")).unwrap();
    assert!(text.contains("tau-s = 0.3"), "{text}");
    assert!(s.read(&name("saved")).unwrap().contains("[dsp.low]"));
    // The next start reads the folder as it is then.
    let again = PresetStore::open(d.path());
    assert!(again.read(&name("hand")).unwrap().contains("tau-s = 9"));
    assert!(again.read(&name("saved")).is_err());
}

#[test]
fn the_size_cap_counts_the_text_read() {
    let d = tempfile::tempdir().unwrap();
    let p = dir(d.path());
    std::fs::create_dir_all(&p).unwrap();
    // 40 files of 15 KiB: the first 34 fit in 512 KiB, by name.
    let body = format!("[fft]\nenabled = true\n#{}\n", "x".repeat(15 * 1024 - 24));
    for i in 0..40 {
        std::fs::write(p.join(format!("f{i:02}.toml")), &body).unwrap();
    }
    let s = PresetStore::open(d.path());
    let l = s.list();
    let fit = (MAX_TOTAL_BYTES / body.len() as u64) as usize;
    assert_eq!(l.items.len(), fit);
    assert!(l.truncated);
    assert_eq!(l.items.last().unwrap().name, format!("f{:02}", fit - 1));
    let held: u64 = s.index.values().map(Entry::bytes).sum();
    assert!(held <= MAX_TOTAL_BYTES, "{held}");
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
    // Indexed at once, and read back (from the index).
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
    assert_eq!(s.index[&name("kept")].bytes(), on_disk);
}

/// The names a list offers.
fn names_of(l: &PresetList) -> Vec<&str> {
    l.items.iter().map(|i| i.name.as_str()).collect()
}

#[test]
fn a_rescan_offers_the_folder_as_it_is_now() {
    let d = tempfile::tempdir().unwrap();
    let p = dir(d.path());
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("edited.toml"), "[dsp.low]\ntau-s = 0.3\n").unwrap();
    std::fs::write(p.join("removed.toml"), "[fft]\nenabled = true\n").unwrap();
    let mut s = PresetStore::open(d.path());
    assert_eq!(names_of(&s.list()), ["edited", "removed"]);
    assert!(s.rescanned().is_none(), "nothing was read again yet");
    std::fs::write(p.join("edited.toml"), "[dsp.low]\ntau-s = 9\n").unwrap();
    std::fs::remove_file(p.join("removed.toml")).unwrap();
    std::fs::write(p.join("added.toml"), "[fft]\nenabled = false\n").unwrap();
    // Still what was read at open ...
    assert!(s.read(&name("edited")).unwrap().contains("tau-s = 0.3"));
    s.rescan();
    // ... and the folder as it is after the rescan, told once.
    let told = s.rescanned().expect("a finished rescan is told");
    assert_eq!(names_of(&told), ["added", "edited"]);
    assert!(s.rescanned().is_none());
    assert!(s.read(&name("edited")).unwrap().contains("tau-s = 9"));
    assert!(s.read(&name("removed")).is_err());
    // A FIFO put in its place is not read (it would wait for a writer).
    std::fs::remove_file(p.join("added.toml")).unwrap();
    nix::unistd::mkfifo(&p.join("added.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    s.rescan();
    assert_eq!(names_of(&s.list()), ["edited"]);
}

#[test]
fn a_rescan_keeps_what_control_handed_the_writer_after_it() {
    let d = tempfile::tempdir().unwrap();
    let p = dir(d.path());
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("deleted.toml"), "[fft]\nenabled = true\n").unwrap();
    std::fs::write(p.join("on disk.toml"), "[fft]\nenabled = true\n").unwrap();
    let mut s = PresetStore::open(d.path());
    // The folder as the writer read it, before it wrote "saved" and
    // removed "deleted" (handed over after the scan): the index already
    // has what those leave, and keeps it.
    let scan = Scan::read(&p, &BTreeSet::new());
    s.index_save(&name("saved"), "[fft]\nenabled = false\n".into());
    s.index.remove(&name("deleted"));
    s.take_scan(scan, &[name("saved"), name("deleted")]);
    assert_eq!(names_of(&s.list()), ["on disk", "saved"]);
    assert!(!s.list().truncated);
    // Past the count cap, scanned presets make room for the pending save,
    // from the end of the names.
    for i in 0..MAX_PRESETS {
        std::fs::write(p.join(format!("x{i:03}.toml")), "[fft]\n").unwrap();
    }
    let scan = Scan::read(&p, &BTreeSet::new());
    assert!(scan.truncated && scan.index.len() == MAX_PRESETS);
    let last = scan.index.keys().next_back().unwrap().clone();
    s.take_scan(scan, &[name("saved")]);
    let l = s.list();
    assert_eq!(l.items.len(), MAX_PRESETS);
    assert!(l.truncated);
    assert!(names_of(&l).contains(&"saved"));
    assert!(
        !s.index.contains_key(&last),
        "the last scanned name made room"
    );
}

#[test]
fn the_writer_rescans_after_the_saves_handed_to_it_before() {
    use super::super::Response;
    let d = tempfile::tempdir().unwrap();
    let p = dir(d.path());
    let (tx, rx) = std::sync::mpsc::channel();
    let mut s = PresetStore::open(d.path());
    s.start_writer(tx);
    assert_eq!(s.save_for(5, &name("saved"), &state()), Ok(Answer::Later));
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("by hand.toml"), "[dsp.low]\ntau-s = 0.25\n").unwrap();
    s.rescan();
    // A second reload while the first is under way is not lost.
    s.rescan();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut told = Vec::new();
    while told.len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.settle();
        told.extend(s.rescanned());
    }
    assert_eq!(told.len(), 2, "both rescans finished");
    for l in &told {
        assert_eq!(names_of(l), ["by hand", "saved"]);
    }
    assert!(s.read(&name("by hand")).unwrap().contains("tau-s = 0.25"));
    assert!(matches!(&reply(&rx, 5)[..], [Response::Presets(_)]));
    s.close();
    assert_eq!(names_of(&s.list()), ["by hand", "saved"]);
}

#[test]
fn a_flood_of_unreadable_files_never_hides_a_preset_that_was_offered() {
    let d = tempfile::tempdir().unwrap();
    let p = dir(d.path());
    std::fs::create_dir_all(&p).unwrap();
    // More files named like presets that cannot be read (not UTF-8) than
    // a scan tries, all before the real ones by name.
    for i in 0..(MAX_PRESETS + 50) {
        std::fs::write(p.join(format!("junk{i:04}.toml")), [0xff, 0xfe, 0x00]).unwrap();
    }
    let mut s = PresetStore::open(d.path());
    assert!(names_of(&s.list()).is_empty());
    s.save(&name("saved"), &state()).unwrap();
    // Edited by hand after it was saved, and one more added by hand.
    std::fs::write(p.join("saved.toml"), "[dsp.low]\ntau-s = 7\n").unwrap();
    std::fs::write(p.join("typed in.toml"), "[fft]\nenabled = true\n").unwrap();
    s.rescan();
    let l = s.list();
    // What was offered is read again (the disk's text, not the old one) ...
    assert_eq!(names_of(&l), ["saved"]);
    assert!(s.read(&name("saved")).unwrap().contains("tau-s = 7"));
    // ... while the bound on files tried still holds for the rest, and the
    // list says the folder holds more.
    assert!(l.truncated);
    // Once gone from the disk, it goes from the list like any other.
    std::fs::remove_file(p.join("saved.toml")).unwrap();
    s.rescan();
    assert!(names_of(&s.list()).is_empty());
}

#[test]
fn a_folder_too_big_to_list_still_offers_what_was_offered() {
    let d = tempfile::tempdir().unwrap();
    let p = dir(d.path());
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("kept.toml"), "[fft]\nenabled = true\n").unwrap();
    std::fs::write(p.join("dropped.toml"), "[fft]\nenabled = false\n").unwrap();
    for i in 0..500 {
        std::fs::File::create(p.join(format!("other{i:03}"))).unwrap();
    }
    // A listing cut at one entry (MAX_SCAN in service) almost surely
    // misses "kept" (and "dropped"): it is looked at by name all the same.
    let known = BTreeSet::from([name("kept")]);
    let scan = Scan::read_listing(&p, &known, 1);
    assert!(scan.index.contains_key(&name("kept")));
    assert!(scan.truncated, "the folder holds more than was looked at");
    // Listed in full, both are offered and nothing is cut short.
    let scan = Scan::read(&p, &known);
    assert_eq!(scan.index.len(), 2);
    assert!(!scan.truncated);
}
