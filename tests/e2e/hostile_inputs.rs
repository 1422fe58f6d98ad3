//! A hostile kiln.toml or archive (issue 13): nothing outside the project
//! is read unless the user allows it, nothing outside the store is linked
//! or changed, and downloads are bounded. Each refusal is named.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Project, fixture};

/// A project whose target declares `input` (a TOML inline table).
fn with_input(input: &str) -> Project {
    let p = Project::new();
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = {{ path = {:?} }}\nparams = {{ attack = \"noop\" }}\ninputs.x = {input}\n",
            fixture("hostile")
        ),
    );
    p
}

#[test]
fn a_path_outside_the_project_needs_the_users_permission() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host data").unwrap();
    let p = with_input(&format!(
        "{{ path = {:?} }}",
        outside.path().display().to_string()
    ));
    p.kiln(&["build"])
        .fails_with("kiln.toml:4:")
        .fails_with("is outside the project directory")
        .fails_with(&format!(
            "--allow-path {}",
            outside.path().canonicalize().unwrap().display()
        ));
    assert!(p.store_entries().is_empty(), "{:?}", p.store_entries());
    // The user allows it: then it builds.
    let allowed = format!(
        "{}:{}",
        outside.path().display(),
        crate::support::shared_paths()
    );
    p.kiln(&["build", "--allow-path", &allowed]).ok();
}

#[test]
fn dotdot_and_symlinks_out_of_the_project_are_refused() {
    let p = with_input("{ path = \"../../..\" }");
    p.kiln(&["build"])
        .fails_with("is outside the project directory");
    let p = with_input("{ path = \"link\" }");
    std::os::unix::fs::symlink("/etc", p.path("link")).unwrap();
    p.kiln(&["build"])
        .fails_with("link (resolved to /etc) is outside the project directory");
    assert!(p.store_entries().is_empty());
}

#[test]
fn file_urls_cannot_read_kernel_interfaces_or_hang_on_a_fifo() {
    let p = with_input("{ url = \"file:///proc/self/environ\" }");
    let r = crate::support::run(
        p.command(&["build"])
            .env("KILN_TEST_SECRET", "hunter2")
            .output()
            .unwrap(),
    );
    let r = r.fails_with("/environ is a kernel interface");
    assert!(!r.stderr.contains("hunter2"));
    assert!(p.store_entries().is_empty());

    let p = with_input("{ url = \"file://PIPE\" }");
    let pipe = p.path("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&pipe)
            .status()
            .unwrap()
            .success()
    );
    p.write(
        "kiln.toml",
        &std::fs::read_to_string(p.path("kiln.toml"))
            .unwrap()
            .replace("PIPE", &pipe.display().to_string()),
    );
    let start = std::time::Instant::now();
    p.kiln(&["build"]).fails_with("pipe is a fifo");
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn prefetch_refuses_dev_zero_and_stops_at_the_size_limit() {
    let p = Project::new();
    p.kiln(&["prefetch", "file:///dev/zero"])
        .fails_with("/dev/zero is a kernel interface");
    // A 10 MiB (sparse) file against a 1 MiB limit.
    let big = p.path("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(10 << 20)
        .unwrap();
    let url = format!("file://{}", big.display());
    p.kiln(&["prefetch", "--max-download", "1M", &url])
        .fails_with("is larger than the limit of 1048576 bytes; nothing was stored");
    assert!(p.store_entries().is_empty());
    assert_eq!(p.staging_leftovers(), 0);
}

/// One raw tar header + data, written field by field so that link targets
/// the tar crate would refuse (`..`) can be tested.
fn tar_entry(name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    {
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_entry_type(kind);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn the_symlink_chain_archive_leaves_the_host_file_untouched() {
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("secret");
    std::fs::write(&victim, "host secret").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    // d1/…/d20/up -> ../../… (back to the root), esc -> d1/…/d20/up/../..
    // (lexically inside, really above it), loot => esc/<victim> (hard link).
    let dirs: Vec<String> = (1..=20).map(|i| format!("d{i}")).collect();
    let deep = dirs.join("/");
    let mut tar = Vec::new();
    use tar::EntryType as T;
    tar.extend(tar_entry(&format!("{deep}/"), T::Directory, "", b""));
    tar.extend(tar_entry(
        &format!("{deep}/up"),
        T::Symlink,
        &vec![".."; 20].join("/"),
        b"",
    ));
    tar.extend(tar_entry(
        "esc",
        T::Symlink,
        &format!("{deep}/up/../.."),
        b"",
    ));
    tar.extend(tar_entry(
        "loot",
        T::Link,
        &format!("esc{}", victim.display()),
        b"",
    ));
    tar.extend_from_slice(&[0u8; 1024]);
    let p = Project::new();
    std::fs::write(p.path("chain.tar"), &tar).unwrap();
    let url = format!("file://{}", p.path("chain.tar").display());
    p.kiln(&["prefetch", "--unpack", &url])
        .fails_with("hard link 'loot' points to 'esc")
        .fails_with("which is not a regular file this archive extracted");
    let meta = std::fs::metadata(&victim).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the host file was chmodded"
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&meta),
        1,
        "the host file was linked"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host secret");
    assert!(p.store_entries().is_empty(), "{:?}", p.store_entries());
    assert_eq!(p.staging_leftovers(), 0);
}

/// A loopback HTTP server answering every request with `answer` (the
/// whole response head and body); returns its address and a hit counter.
fn answering(
    bind: &str,
    answer: String,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(bind).unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s.write_all(answer.as_bytes());
        }
    });
    (addr, hits)
}

fn secret_answer() -> String {
    "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhost secret\n".into()
}

#[test]
fn a_url_input_cannot_make_kiln_fetch_from_the_hosts_loopback_or_metadata() {
    let (addr, hits) = answering("127.0.0.1:0", secret_answer());
    for (url, needle) in [
        (
            format!("http://{addr}/secret"),
            "127.0.0.1 is a loopback address".to_string(),
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "169.254.169.254 is a link-local address".to_string(),
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{}/secret", addr.port()),
            "::ffff:127.0.0.1 is a loopback address".to_string(),
        ),
        (
            format!("http://localhost:{}/secret", addr.port()),
            "localhost resolves to 127.0.0.1, which is a loopback address".to_string(),
        ),
    ] {
        // During a build (which would pin it), in kiln lock and in prefetch.
        let p = with_input(&format!("{{ url = {url:?} }}"));
        for args in [&["build"][..], &["lock"], &["prefetch", &url]] {
            p.kiln(args)
                .fails_with(&needle)
                .fails_with("--allow-fetch-from");
        }
        assert!(!p.path("kiln.lock").exists());
        assert!(p.store_entries().is_empty(), "{:?}", p.store_entries());
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    // The user's allow list (a flag or the user config, never kiln.toml)
    // admits a mirror on loopback.
    let p = with_input(&format!("{{ url = \"http://{addr}/secret\" }}"));
    p.kiln(&["build", "--allow-fetch-from", "127.0.0.1"]).ok();
    let q = with_input(&format!("{{ url = \"http://{addr}/secret\" }}"));
    std::fs::write(
        q.home.path().join("config.toml"),
        "[fetch]\nallow = [\"127.0.0.0/8\"]\n",
    )
    .unwrap();
    q.kiln(&["lock"]).ok();
}

#[test]
fn a_name_that_resolves_to_loopback_is_refused_after_resolution() {
    // /etc/hosts names loopback under names that are not `localhost`.
    let Some(name) = ["ip6-localhost", "ip6-loopback"].into_iter().find(|n| {
        std::net::ToSocketAddrs::to_socket_addrs(&(*n, 80))
            .is_ok_and(|mut a| a.any(|a| a.ip().is_loopback()))
    }) else {
        eprintln!("SKIPPED: no /etc/hosts name other than localhost resolves to loopback here");
        return;
    };
    let p = with_input(&format!("{{ url = \"http://{name}:1/x\" }}"));
    p.kiln(&["build"]).fails_with(&format!(
        "{name} resolves to ::1, which is a loopback address"
    ));
}

#[test]
fn every_redirect_hop_obeys_the_address_rule() {
    // The allowed mirror redirects to another loopback address, which the
    // user did not allow.
    let (inner, inner_hits) = answering("127.0.0.2:0", secret_answer());
    let (mirror, _) = answering(
        "127.0.0.1:0",
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{inner}/secret\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    let p = with_input(&format!("{{ url = \"http://{mirror}/x\" }}"));
    p.kiln(&["build", "--allow-fetch-from", "127.0.0.1"])
        .fails_with("127.0.0.2 is a loopback address");
    assert_eq!(inner_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // With both allowed, the redirect is followed.
    p.kiln(&["build", "--allow-fetch-from", "127.0.0.1,127.0.0.2"])
        .ok();
    assert_eq!(inner_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}
