//! Any bytes as an archive (tar, gz, xz, zst, zip by magic): unpacking may
//! fail, but never panics, and never writes outside its directory.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(d) = tempfile::tempdir() else { return };
    let archive = d.path().join("archive");
    let dest = d.path().join("out");
    if std::fs::write(&archive, data).is_err() {
        return;
    }
    let _ = kiln_core::unpack::unpack(&archive, &dest);
    // Everything written is beneath `d`: nothing but `archive` and `out`.
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.len() <= 2, "unpacking wrote beside its directory: {names:?}");
    let _ = kiln_core::store::make_writable(&dest);
});
