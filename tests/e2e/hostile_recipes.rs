//! The hostile-recipe battery: each attack fails the build with its own
//! named error and leaves nothing behind but the declared input.

use crate::support::{Project, fixture};

/// A project whose target runs the hostile recipe with `attack`.
fn attack(attack: &str, extra_params: &str) -> Project {
    let p = Project::new();
    p.write("data/x", "declared input\n");
    p.write(
        "kiln.toml",
        &format!(
            "[target.t]\nrecipe = {{ path = {:?} }}\nparams = {{ attack = \"{attack}\"{extra_params} }}\ninputs.data = {{ path = \"data\" }}\n",
            fixture("hostile")
        ),
    );
    p
}

/// Nothing but the input entry in the store, no link, no staging leftovers.
#[track_caller]
fn left_nothing(p: &Project) {
    p.assert_left_only_input("data");
    assert_eq!(
        std::fs::read_to_string(p.path("data/x")).unwrap(),
        "declared input\n"
    );
}

#[test]
fn reading_etc_passwd_finds_nothing() {
    let p = attack("read-passwd", "");
    p.kiln(&["build"])
        .fails_with("reading /etc/passwd: No such file or directory");
    left_nothing(&p);
}

#[test]
fn listing_the_root_finds_nothing() {
    let p = attack("list-root", "");
    p.kiln(&["build"])
        .fails_with("listing /: No such file or directory");
    left_nothing(&p);
}

#[test]
fn the_environment_is_empty() {
    let p = attack("read-env", "");
    let r = crate::support::run(
        p.command(&["build"])
            .env("KILN_TEST_SECRET", "hunter2")
            .output()
            .unwrap(),
    );
    let r = r.fails_with("the environment is empty");
    assert!(!r.stderr.contains("hunter2"));
    left_nothing(&p);
}

#[test]
fn tcp_to_a_loopback_listener_is_denied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = attack("tcp-connect", &format!(", port = {port}"));
    p.kiln(&["build"])
        .fails_with("creating a TCP socket: ErrorCode { code: 1, name: \"access-denied\"");
    assert!(
        listener.accept().is_err(),
        "the recipe reached the listener"
    );
    left_nothing(&p);
}

#[test]
fn writing_outside_out_is_refused() {
    let p = attack("write-outside-out", "");
    p.kiln(&["build"])
        .fails_with("writing /work/../escape.txt: Operation not permitted");
    left_nothing(&p);
}

#[test]
fn host_file_calls_keep_to_the_recipes_directories() {
    let p = attack("assemble-escapes", "");
    let r = p.kiln(&["build"]).fails_with(
        "read: hashing pieces: bad path: piece 0: /etc/passwd is not under /inputs, /work or /out",
    );
    for refusal in [
        "read: hashing pieces: bad path: piece 0: /inputs/data/../../../../../etc/passwd: ",
        "write: writing files: bad path: /inputs/data/planted.txt is not under /work or /out",
        "write: writing files: bad path: /work/../escape.txt: ",
        "write: writing files: bad path: /tmp/x is not under /work or /out",
    ] {
        assert!(
            r.stderr.contains(refusal),
            "{refusal:?} not in {}",
            r.stderr
        );
    }
    left_nothing(&p);
}

#[test]
fn writing_into_inputs_is_refused() {
    let p = attack("write-inputs", "");
    p.kiln(&["build"])
        .fails_with("writing /inputs/data/planted.txt: Operation not permitted");
    left_nothing(&p);
}

#[test]
fn an_endless_loop_hits_the_time_limit() {
    let p = attack("loop-forever", "");
    p.kiln(&["build", "--timeout", "2s"])
        .fails_with("ran past its time limit of 2s");
    left_nothing(&p);
}

#[test]
fn allocating_8_gib_hits_the_memory_limit() {
    let p = attack("alloc-8g", "");
    p.kiln(&["build", "--memory", "256M"])
        .fails_with("more than its memory limit of 256 MiB");
    left_nothing(&p);
}

#[test]
fn an_undeclared_tool_is_refused() {
    let p = attack("undeclared-tool", "");
    p.kiln(&["build"])
        .fails_with("undeclared tool: 'sh' is not an input of target 't'");
    left_nothing(&p);
}

#[test]
fn a_tool_path_with_dotdot_is_refused() {
    let p = attack("dotdot-tool", "");
    p.kiln(&["build"]).fails_with(
        "bad path: '../../../../bin/sh' in input 'data': a tool path may not contain '..'",
    );
    left_nothing(&p);
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let p = attack("panic", "");
    let r = p
        .kiln(&["build"])
        .fails_with("recipe for 't' crashed: wasm trap: wasm `unreachable` instruction executed");
    assert!(
        r.stderr.contains("the hostile recipe panics on purpose"),
        "{}",
        r.stderr
    );
    left_nothing(&p);
}

#[test]
fn a_100_mb_log_line_is_refused() {
    let p = attack("huge-log", "");
    p.kiln(&["build"])
        .fails_with("sent a log message of 104857600 bytes; the limit is 1048576 bytes");
    left_nothing(&p);
}

/// A component that exports `build` but instantiates `memories` extra core
/// modules, each with a small linear memory of its own: a way to multiply
/// memory past a per-memory cap. Written in the component text format.
fn many_memories_component(memories: usize) -> Vec<u8> {
    let mut wat = String::from(
        r#"(component
  (core module $main
    (memory (export "mem") 1)
    (func (export "build") (result i32) unreachable))
  (core instance $m (instantiate $main))
  (core module $extra (memory 16))
"#,
    );
    for _ in 0..memories {
        wat.push_str("  (core instance (instantiate $extra))\n");
    }
    wat.push_str(
        r#"  (type $host-error' (variant (case "bad-path" string) (case "not-found" string)
    (case "wrong-kind" string) (case "invalid" string) (case "undeclared-tool" string)
    (case "network-denied" string) (case "io" string) (case "failed" string)))
  (export $host-error "error" (type $host-error'))
  (type $build-error' (variant (case "bad-params" string) (case "tool-failed" string)
    (case "host" $host-error) (case "failed" string)))
  (export $build-error "build-error" (type $build-error'))
  (func (export "build") (result (result (error $build-error)))
    (canon lift (core func $m "build") (memory (core memory $m "mem"))))
)"#,
    );
    wat::parse_str(&wat).expect("the test component parses")
}

#[test]
fn a_component_with_many_memories_is_refused_before_it_runs() {
    let p = Project::new();
    p.write("data/x", "declared input\n");
    std::fs::write(p.path("many.wasm"), many_memories_component(40)).unwrap();
    p.write(
        "kiln.toml",
        "[target.t]\nrecipe = { path = \"many.wasm\" }\ninputs.data = { path = \"data\" }\n",
    );
    p.kiln(&["build"]).fails_with(
        "recipe for 't' creates more wasm objects than kiln allows (64 instances, 16 memories, 64 tables in all): resource limit exceeded: memory count too high at 17",
    );
    left_nothing(&p);

    // The same shape under the cap instantiates and runs (and traps, as
    // written): the refusal above is the count, not the shape.
    std::fs::write(p.path("few.wasm"), many_memories_component(10)).unwrap();
    p.write(
        "kiln.toml",
        "[target.u]\nrecipe = { path = \"few.wasm\" }\ninputs.data = { path = \"data\" }\n",
    );
    p.kiln(&["build"])
        .fails_with("recipe for 'u' crashed: wasm trap: wasm `unreachable` instruction executed");
}

#[test]
fn files_calls_follow_no_planted_symlink_and_block_on_no_fifo() {
    let p = crate::support::busybox_project("", "attack = \"files-escapes\"");
    let start = std::time::Instant::now();
    let r = p.kiln(&["build"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    for refusal in [
        "copy /work/up/passwd: copying /work/up/passwd to /out/p: bad path:",
        "copy into /work/up: copying /work/x to /work/up/x: bad path:",
        // The FIFO the tool planted is gone: special files are removed after
        // every exec (the copy's own refusal of one is a unit test in
        // runtime/copy.rs).
        "copy a fifo: copying /work/fifo to /out/fifo: not found:",
        "chmod /work/up/passwd: setting the mode: bad path:",
        "chmod a symlink: setting the mode: wrong kind of file: /work/up is a symlink",
        "setuid: setting the mode: invalid request: /work/x: mode 0o4755 has bits beyond 0o777",
        "copy /etc: copying /etc/passwd to /out/p: bad path: /etc/passwd is not under /inputs, /work or /out",
    ] {
        assert!(
            r.stderr.contains(refusal),
            "{refusal:?} not in {}",
            r.stderr
        );
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    p.assert_left_only_input("tools");
}
