use super::*;

/// Read a whole file to mono through the streaming reader.
fn read_all(path: &Path, channel: i32) -> Result<(WavHeader, Vec<f32>), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut s = open_stream(path, 100, stop).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut buf = [0.0f32; 100];
    loop {
        let n = s.read_mono(channel, &mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok((s.header(), out));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn parse(bytes: &[u8]) -> Result<WavHeader, String> {
    parse_header(&mut &bytes[..])
}

fn write_wav(path: &Path, bits: u16, float: bool, frames: usize) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        let v = if i % 2 == 0 { 0.5 } else { -0.5 };
        if float {
            w.write_sample(v as f32).unwrap();
            w.write_sample(0.0f32).unwrap();
        } else {
            let s = (v * ((1i64 << (bits - 1)) as f64)) as i32;
            w.write_sample(s).unwrap();
            w.write_sample(0).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// A WAV built by hand: `fmt` body, then chunks, then data.
fn wav_bytes(fmt: &[u8], extra: &[(&[u8; 4], &[u8])], data_len: u32, data: &[u8]) -> Vec<u8> {
    let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
    for (id, body) in extra {
        v.extend_from_slice(*id);
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        if body.len() % 2 == 1 {
            v.push(0);
        }
    }
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    v.extend_from_slice(fmt);
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn fmt_body(tag: u16, channels: u16, rate: u32, container: u16, bits: u16) -> Vec<u8> {
    let align = channels * container;
    let mut f = Vec::new();
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * align as u32).to_le_bytes());
    f.extend_from_slice(&align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f
}

#[test]
fn reads_int_and_float_wavs_mixed_to_mono() {
    let dir = tempfile::tempdir().unwrap();
    for (bits, float) in [(16, false), (24, false), (32, false), (32, true)] {
        let p = dir.path().join(format!("t{bits}{float}.wav"));
        write_wav(&p, bits, float, 250);
        let (h, d) = read_all(&p, -1).unwrap();
        assert_eq!(h.sample_rate, 48_000);
        assert_eq!(d.len(), 250);
        assert!((d[0] - 0.25).abs() < 1e-4, "{bits} {float}: {}", d[0]);
        let (_, left) = read_all(&p, 0).unwrap();
        assert!((left[1] + 0.5).abs() < 1e-4);
    }
}

#[test]
fn agrees_with_hound_sample_for_sample() {
    let dir = tempfile::tempdir().unwrap();
    for (bits, float) in [(16, false), (24, false), (32, false), (32, true)] {
        let p = dir.path().join(format!("h{bits}{float}.wav"));
        write_wav(&p, bits, float, 333);
        let (_, ours) = read_all(&p, 1).unwrap();
        let r = hound::WavReader::open(&p).unwrap();
        let scale = 1.0 / (1u64 << (bits - 1)) as f32;
        let theirs: Vec<f32> = if float {
            r.into_samples::<f32>().map(|s| s.unwrap()).collect()
        } else {
            r.into_samples::<i32>()
                .map(|s| s.unwrap() as f32 * scale)
                .collect()
        };
        let right: Vec<f32> = theirs.chunks(2).map(|f| f[1]).collect();
        assert_eq!(ours, right, "{bits} {float}");
    }
}

#[test]
fn unknown_chunks_are_skipped_with_their_pad_byte() {
    let fmt = fmt_body(1, 1, 8000, 2, 16);
    let data = [0x00, 0x40, 0x00, 0xc0];
    let odd: &[u8] = b"abc";
    let bytes = wav_bytes(&fmt, &[(b"LIST", odd), (b"JUNK", &[0u8; 10])], 4, &data);
    let h = parse(&bytes).unwrap();
    assert_eq!(h.format, SampleFormat::S16Le);
    assert_eq!(h.sample_rate, 8000);
    assert_eq!(h.data_bytes, Some(4));
}

#[test]
fn streamed_wavs_without_a_length_read_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let fmt = fmt_body(1, 1, 8000, 2, 16);
    let samples: Vec<u8> = (0..100i16).flat_map(|v| (v * 100).to_le_bytes()).collect();
    for len in [0u32, 0xffff_ffff] {
        // Plus a trailing half frame, as a killed recorder leaves it.
        let mut bytes = wav_bytes(&fmt, &[], len, &samples);
        bytes.push(0x7f);
        let p = dir.path().join(format!("s{len}.wav"));
        std::fs::write(&p, &bytes).unwrap();
        let (h, d) = read_all(&p, -1).unwrap();
        assert_eq!(h.data_bytes, None);
        assert_eq!(d.len(), 100);
        assert_eq!(d[99], 9900.0 / 32768.0);
    }
}

#[test]
fn a_truncated_file_ends_where_its_data_ends() {
    let dir = tempfile::tempdir().unwrap();
    let fmt = fmt_body(1, 2, 8000, 2, 16);
    let bytes = wav_bytes(&fmt, &[], 4000, &[0u8; 42]);
    let p = dir.path().join("cut.wav");
    std::fs::write(&p, &bytes).unwrap();
    let (_, d) = read_all(&p, -1).unwrap();
    assert_eq!(d.len(), 10); // 42 bytes = 10 whole stereo frames
}

#[test]
fn extensible_24_in_32_is_left_justified() {
    let mut fmt = fmt_body(0xfffe, 1, 48_000, 4, 32);
    fmt.extend_from_slice(&22u16.to_le_bytes()); // cbSize
    fmt.extend_from_slice(&24u16.to_le_bytes()); // valid bits
    fmt.extend_from_slice(&4u32.to_le_bytes()); // channel mask
    fmt.extend_from_slice(&[
        1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71,
    ]);
    // +0.5 as a left-justified 24-bit sample: 0x400000 << 8.
    let data = 0x4000_0000i32.to_le_bytes();
    let bytes = wav_bytes(&fmt, &[], 4, &data);
    let h = parse(&bytes).unwrap();
    assert_eq!(h.format, SampleFormat::S32Le);
    let mut s = WavStream::new(&bytes[..], 4).unwrap();
    let mut out = [0.0f32; 4];
    assert_eq!(s.read_mono(-1, &mut out).unwrap(), 1);
    assert_eq!(out[0], 0.5);
}

#[test]
fn plain_pcm_24_bits_in_4_bytes_is_alsa_s24_le() {
    // What `arecord -f S24_LE` writes: format tag 1, 24 bits, 4-byte
    // samples, right-justified (the top byte a sign copy).
    let fmt = fmt_body(1, 1, 48_000, 4, 24);
    let data: Vec<u8> = [0x0040_0000i32, -0x0040_0000]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bytes = wav_bytes(&fmt, &[], 8, &data);
    assert_eq!(parse(&bytes).unwrap().format, SampleFormat::S24Le);
    let mut s = WavStream::new(&bytes[..], 4).unwrap();
    let mut out = [0.0f32; 4];
    assert_eq!(s.read_mono(-1, &mut out).unwrap(), 2);
    assert_eq!(&out[..2], &[0.5, -0.5]);
    // 32 bits declared in 4 bytes stays 32-bit.
    let bytes = wav_bytes(&fmt_body(1, 1, 48_000, 4, 32), &[], 8, &data);
    assert_eq!(parse(&bytes).unwrap().format, SampleFormat::S32Le);
}

#[test]
fn rf64_data_ends_where_ds64_says() {
    let dir = tempfile::tempdir().unwrap();
    let fmt = fmt_body(1, 1, 8000, 2, 16);
    let samples: Vec<u8> = (0..100i16).flat_map(|v| (v * 100).to_le_bytes()).collect();
    let mut ds64 = Vec::new();
    ds64.extend_from_slice(&0u64.to_le_bytes()); // riff size (unused)
    ds64.extend_from_slice(&(samples.len() as u64).to_le_bytes());
    ds64.extend_from_slice(&100u64.to_le_bytes());
    ds64.extend_from_slice(&0u32.to_le_bytes()); // no table
    let mut bytes = wav_bytes(&fmt, &[(b"ds64", &ds64)], 0xffff_ffff, &samples);
    bytes[0..4].copy_from_slice(b"RF64");
    // A LIST chunk after the audio, as BWF and ffmpeg write it: text, not
    // samples.
    bytes.extend_from_slice(b"LIST");
    bytes.extend_from_slice(&400u32.to_le_bytes());
    bytes.extend_from_slice(&[b'x'; 400]);
    let p = dir.path().join("rf64.wav");
    std::fs::write(&p, &bytes).unwrap();
    let (h, d) = read_all(&p, -1).unwrap();
    assert_eq!(h.data_bytes, Some(200));
    assert_eq!(d.len(), 100);
    // Without ds64's size (a streaming RF64 writer's 0): to the end.
    ds64[8..16].copy_from_slice(&0u64.to_le_bytes());
    let mut bytes = wav_bytes(&fmt, &[(b"ds64", &ds64)], 0xffff_ffff, &samples);
    bytes[0..4].copy_from_slice(b"RF64");
    assert_eq!(parse(&bytes).unwrap().data_bytes, None);
    // A ds64 too short to hold the size is refused.
    let mut bytes = wav_bytes(&fmt, &[(b"ds64", &[0u8; 8])], 0xffff_ffff, &samples);
    bytes[0..4].copy_from_slice(b"RF64");
    assert!(parse(&bytes).unwrap_err().contains("ds64"));
}

#[test]
fn bad_headers_get_clear_errors() {
    let ok = fmt_body(1, 1, 8000, 2, 16);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not a wav file at all".to_vec(), "not a valid WAV"),
        (b"RIFF".to_vec(), "too short"),
        (b"RIFX\0\0\0\0WAVE".to_vec(), "big-endian"),
        (
            b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0".to_vec(),
            "ends inside",
        ),
        (b"RIFF\0\0\0\0WAVE".to_vec(), "no data chunk"),
        (
            wav_bytes(&fmt_body(1, 1, 0, 2, 16), &[], 2, &[0, 0]),
            "sample rate of 0 Hz",
        ),
        (
            wav_bytes(&fmt_body(1, 1, 999, 2, 16), &[], 2, &[0, 0]),
            "999 Hz",
        ),
        (
            wav_bytes(&fmt_body(1, 1, 4_000_000, 2, 16), &[], 2, &[0, 0]),
            "4000000 Hz",
        ),
        (
            wav_bytes(&fmt_body(1, 0, 8000, 2, 16), &[], 2, &[0, 0]),
            "0 channels",
        ),
        (
            wav_bytes(&fmt_body(1, 65, 8000, 2, 16), &[], 2, &[0, 0]),
            "65 channels",
        ),
        (
            wav_bytes(&fmt_body(1, 1, 8000, 1, 8), &[], 1, &[0]),
            "8-bit",
        ),
        (
            wav_bytes(&fmt_body(3, 1, 8000, 8, 64), &[], 8, &[0; 8]),
            "64-bit float",
        ),
        (
            wav_bytes(&fmt_body(2, 1, 8000, 2, 4), &[], 2, &[0, 0]),
            "format tag 0x0002",
        ),
        (
            wav_bytes(&fmt_body(1, 1, 8000, 2, 17), &[], 2, &[0, 0]),
            "17 bits",
        ),
        (
            wav_bytes(&ok[..10], &[], 2, &[0, 0]),
            "fmt chunk of 10 bytes",
        ),
    ];
    for (bytes, want) in cases {
        let e = parse(&bytes).unwrap_err();
        assert!(e.contains(want), "{want:?} not in {e:?}");
    }
    // Data before fmt.
    let mut v = b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0".to_vec();
    v.extend_from_slice(b"fmt \x10\0\0\0");
    v.extend_from_slice(&ok);
    assert!(parse(&v).unwrap_err().contains("data before the fmt"));
    // A chunk larger than the header budget is refused without reading it.
    let mut v = b"RIFF\0\0\0\0WAVEJUNK\xf0\xff\xff\xff".to_vec();
    v.extend_from_slice(&[0; 64]);
    assert!(parse(&v).unwrap_err().contains("no audio data within"));
}

#[test]
fn empty_missing_and_odd_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wav");
    write_wav(&empty, 16, false, 0);
    let (_, d) = read_all(&empty, -1).unwrap();
    assert!(d.is_empty());
    let e = read_all(&dir.path().join("missing.wav"), -1).unwrap_err();
    assert!(e.contains("missing.wav"), "{e}");
    let e = read_all(dir.path(), -1).unwrap_err();
    assert!(e.contains("not a regular file or a FIFO"), "{e}");
}
