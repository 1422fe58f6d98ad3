use super::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

/// A tar with one entry whose header is written by hand, so that names the
/// tar crate would refuse to build (`..`, absolute) can be tested.
fn raw_tar(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    let size = format!("{:011o}", data.len());
    h[124..135].copy_from_slice(size.as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<(), UnpackError>) {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    fs::write(&a, bytes).unwrap();
    let r = unpack(&a, &d.path().join("out"));
    (d, r)
}

#[test]
fn a_good_tar_gz_keeps_exec_bits_and_its_single_root() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, "go/bin/go", &b"abc"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_cksum();
    b.append_link(&mut h, "go/link", "bin/go").unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let (d, r) = unpack_bytes(&gz.finish().unwrap());
    r.unwrap();
    let root = single_root(&d.path().join("out")).unwrap();
    assert!(root.ends_with("go"));
    let mode = fs::metadata(root.join("bin/go"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
    assert_eq!(
        fs::read_link(root.join("link")).unwrap(),
        Path::new("bin/go")
    );
}

#[test]
fn hostile_entries_are_refused_by_name() {
    type Check = fn(&UnpackError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (raw_tar("../evil", b'0', "", b"x"), |e| {
            matches!(e, UnpackError::UnsafePath(_))
        }),
        (raw_tar("/etc/evil", b'0', "", b"x"), |e| {
            matches!(e, UnpackError::UnsafePath(_))
        }),
        (raw_tar("a/../../evil", b'0', "", b"x"), |e| {
            matches!(e, UnpackError::UnsafePath(_))
        }),
        (raw_tar("link", b'2', "/etc/passwd", b""), |e| {
            matches!(e, UnpackError::LinkOut { .. })
        }),
        (raw_tar("d/link", b'2', "../../x", b""), |e| {
            matches!(e, UnpackError::LinkOut { .. })
        }),
        (raw_tar("hard", b'1', "/etc/passwd", b""), |e| {
            matches!(e, UnpackError::HardLinkOut { .. })
        }),
        (raw_tar("hard", b'1', "missing", b""), |e| {
            matches!(e, UnpackError::HardLinkOut { .. })
        }),
        (raw_tar("dev", b'3', "", b""), |e| {
            matches!(
                e,
                UnpackError::Special {
                    kind: "device node",
                    ..
                }
            )
        }),
        (raw_tar("fifo", b'6', "", b""), |e| {
            matches!(e, UnpackError::Special { kind: "fifo", .. })
        }),
        (b"this is not an archive at all".to_vec(), |e| {
            matches!(e, UnpackError::UnknownFormat)
        }),
    ];
    for (bytes, ok) in cases {
        let (d, r) = unpack_bytes(&finish(bytes));
        let e = r.unwrap_err();
        assert!(ok(&e), "{e}");
        assert!(!d.path().join("evil").exists());
    }
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let mut bytes = raw_tar("dir", b'2', ".", b"");
    bytes.extend(raw_tar("dir/x", b'0', "", b"x"));
    let (_d, r) = unpack_bytes(&finish(bytes));
    // Symlinks come last: `dir/x` made a directory the link may not replace.
    assert!(matches!(r, Err(UnpackError::LinkOverDir(_))), "{r:?}");
    // A symlink under a symlink is refused when it is made.
    let mut bytes = raw_tar("a", b'2', "b", b"");
    bytes.extend(raw_tar("a/c", b'2', "d", b""));
    let (_d, r) = unpack_bytes(&finish(bytes));
    assert!(matches!(r, Err(UnpackError::ThroughLink(_))), "{r:?}");
}

/// The archive of issue 13: a chain of symlinks, each lexically inside,
/// that together reach `/`, then a hard link through it to a host file.
fn symlink_chain_archive(host_file: &Path) -> Vec<u8> {
    let depth = 20;
    let dirs: Vec<String> = (1..=depth).map(|i| format!("d{i}")).collect();
    let deep = dirs.join("/");
    let mut bytes = Vec::new();
    bytes.extend(raw_tar(&format!("{deep}/"), b'5', "", b""));
    // d1/…/d20/up -> ../../… (20 levels): d1's parent, the archive's root.
    let up = vec![".."; depth].join("/");
    bytes.extend(raw_tar(&format!("{deep}/up"), b'2', &up, b""));
    // esc -> d1/…/d20/up/../.. : lexically inside, really above the root.
    bytes.extend(raw_tar("esc", b'2', &format!("{deep}/up/../.."), b""));
    let target = format!("esc{}", host_file.display());
    bytes.extend(raw_tar("loot", b'1', &target, b""));
    finish(bytes)
}

#[test]
fn a_symlink_chain_cannot_link_a_host_file_into_the_archive() {
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("secret");
    fs::write(&victim, "host secret").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    let (d, r) = unpack_bytes(&symlink_chain_archive(&victim));
    let e = r.unwrap_err();
    assert!(
        matches!(&e, UnpackError::HardLinkOut { entry, .. } if entry == "loot"),
        "{e}"
    );
    assert!(!d.path().join("out/loot").exists());
    let meta = fs::metadata(&victim).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 1);
}

#[test]
fn entry_count_and_depth_are_bounded() {
    let deep: Vec<String> = (0..=MAX_DEPTH).map(|i| format!("{i}")).collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, deep.join("/"), &b"x"[..]).unwrap();
    let (_d, r) = unpack_bytes(&b.into_inner().unwrap());
    assert!(matches!(r, Err(UnpackError::TooDeep { .. })), "{r:?}");
    // Entries are counted whatever they hold: empty directories too.
    let mut x = Extractor::new(tempfile::tempdir().unwrap().path(), 1 << 20).unwrap();
    x.entries = MAX_ENTRIES;
    assert!(matches!(
        x.admit(Path::new("one-more")),
        Err(UnpackError::TooManyEntries { .. })
    ));
}

#[test]
fn a_decompression_bomb_is_refused() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let size = RATIO_FLOOR + 1024 * 1024;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "zeros", io::repeat(0).take(size))
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    let (_d, r) = unpack_bytes(&gz.finish().unwrap());
    assert!(matches!(r, Err(UnpackError::Bomb { .. })), "{r:?}");
}

#[test]
fn zip_keeps_exec_bits_and_many_roots_stay_as_is() {
    let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    w.start_file("go/bin/go", opts).unwrap();
    w.write_all(b"go").unwrap();
    w.start_file(
        "meta/INFO",
        zip::write::SimpleFileOptions::default().unix_permissions(0o644),
    )
    .unwrap();
    w.write_all(b"i").unwrap();
    let bytes = w.finish().unwrap().into_inner();
    let (d, r) = unpack_bytes(&bytes);
    r.unwrap();
    let root = single_root(&d.path().join("out")).unwrap();
    assert_eq!(root, d.path().join("out"));
    assert_eq!(
        fs::metadata(root.join("go/bin/go"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0o111
    );
    assert_eq!(
        fs::metadata(root.join("meta/INFO"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0
    );
}

#[test]
fn tar_xz_and_tar_zst_unpack_to_the_same_tree_as_plain_tar() {
    let mut b = tar::Builder::new(Vec::new());
    for (name, mode, data) in [
        ("pkg-2.0/bin/tool", 0o755, &b"#!/bin/sh\n"[..]),
        ("pkg-2.0/share/doc.txt", 0o644, b"docs"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&tar).unwrap();
    let xz = xz.finish().unwrap();
    let zst =
        ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    let hash_of = |bytes: &[u8]| {
        let (d, r) = unpack_bytes(bytes);
        r.unwrap();
        let root = single_root(&d.path().join("out")).unwrap();
        assert!(root.ends_with("pkg-2.0"), "{}", root.display());
        assert_eq!(fs::read(root.join("share/doc.txt")).unwrap(), b"docs");
        crate::nar::hash_path(&root).unwrap()
    };
    let plain = hash_of(&tar);
    assert_eq!(hash_of(&xz), plain, "tar.xz");
    assert_eq!(hash_of(&zst), plain, "tar.zst");
    // A truncated archive is an error, not a partial tree.
    let (_d, r) = unpack_bytes(&xz[..xz.len() / 2]);
    assert!(r.is_err());
}
