//! The scheduler: runs a dependency graph's nodes as soon as their
//! dependencies are done, up to `jobs` at a time.
//!
//! Preparing a node (resolving and pinning its inputs) happens on the
//! calling thread, in order, because it updates kiln.lock; executing it (the
//! recipe run) happens on a worker thread. After a failure no node starts;
//! those running finish, and the first error is returned.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, mpsc};

/// What the scheduler needs of a graph node.
pub(super) trait Node {
    fn name(&self) -> &str;
    /// Names of the nodes that must be done first.
    fn deps(&self) -> Vec<&str>;
}

/// What preparing a node gave: a job to run on a worker, or its result
/// already (an output found in the store needs no worker).
pub(super) enum Prepared<J, R> {
    Run(J),
    Done(R),
}

/// Run `pending` (dependencies before dependents, as
/// `Manifest::build_order` lists them). Each finished node's result goes
/// into `done` under its name; a node is ready once all its dependencies
/// are in `done`.
pub(super) fn run<'n, N, J, R, E>(
    mut pending: Vec<&'n N>,
    jobs: usize,
    done: &mut BTreeMap<String, R>,
    mut prepare: impl FnMut(&'n N, &BTreeMap<String, R>) -> Result<Prepared<J, R>, E>,
    execute: impl Fn(J) -> Result<R, E> + Sync,
) -> Result<(), E>
where
    N: Node + Sync + ?Sized,
    J: Send,
    R: Send,
    E: Send,
{
    pending.retain(|n| !done.contains_key(n.name()));
    let jobs = jobs.max(1);
    // Kahn's algorithm: each node counts its dependencies not yet done; a
    // finished node readies the dependents it was the last one of.
    let index: HashMap<&str, usize> = pending
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name(), i))
        .collect();
    let mut waiting: Vec<usize> = vec![0; pending.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); pending.len()];
    for (i, n) in pending.iter().enumerate() {
        for d in n.deps() {
            if let Some(&j) = index.get(d) {
                waiting[i] += 1;
                dependents[j].push(i);
            } else if !done.contains_key(d) {
                // Never satisfiable: the node never runs.
                waiting[i] += 1;
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..pending.len()).filter(|i| waiting[*i] == 0).collect();
    // Node `i` is done: keep its result, ready what waited only for it.
    let mut finish =
        |i: usize, r: R, done: &mut BTreeMap<String, R>, ready: &mut VecDeque<usize>| {
            done.insert(pending[i].name().to_string(), r);
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push_back(d);
                }
            }
        };
    let execute = &execute;
    let mut failure: Option<E> = None;
    // Workers are started as jobs need them, at most `jobs`, and kept: a
    // build of 10,000 stored targets starts two threads, not 10,000.
    let (work_tx, work_rx) = mpsc::channel::<(usize, J)>();
    let work_rx = Mutex::new(work_rx);
    // `None`: the job panicked (the panic goes on when the scope ends).
    let (done_tx, done_rx) = mpsc::channel::<(usize, Option<Result<R, E>>)>();
    std::thread::scope(|scope| {
        let work_tx = work_tx;
        let mut workers = 0usize;
        let mut running = 0usize;
        loop {
            while failure.is_none() && running < jobs {
                let Some(i) = ready.pop_front() else {
                    break;
                };
                let job = match prepare(pending[i], done) {
                    Ok(Prepared::Run(job)) => job,
                    Ok(Prepared::Done(r)) => {
                        finish(i, r, done, &mut ready);
                        continue;
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                running += 1;
                if workers < running {
                    workers += 1;
                    let (rx, tx) = (&work_rx, done_tx.clone());
                    scope.spawn(move || {
                        loop {
                            let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                            let Ok((i, job)) = next else { break };
                            let run = std::panic::AssertUnwindSafe(|| execute(job));
                            match std::panic::catch_unwind(run) {
                                Ok(result) => {
                                    if tx.send((i, Some(result))).is_err() {
                                        break;
                                    }
                                }
                                Err(panic) => {
                                    // Wake the scheduler, which would
                                    // otherwise wait for this job forever.
                                    let _ = tx.send((i, None));
                                    std::panic::resume_unwind(panic);
                                }
                            }
                        }
                    });
                }
                if work_tx.send((i, job)).is_err() {
                    break;
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, Some(result))) = done_rx.recv() else {
                break;
            };
            running -= 1;
            match result {
                Ok(r) => finish(i, r, done, &mut ready),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        drop(work_tx);
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct N(&'static str, Vec<&'static str>);

    impl Node for N {
        fn name(&self) -> &str {
            self.0
        }
        fn deps(&self) -> Vec<&str> {
            self.1.clone()
        }
    }

    /// Runs `nodes` with `jobs` workers; a node named in `fail` fails.
    /// Returns the order nodes started in, the most that ran at once, and
    /// the result.
    fn simulate(
        nodes: &[N],
        jobs: usize,
        fail: &[&str],
    ) -> (Vec<String>, usize, Result<(), String>, BTreeMap<String, ()>) {
        let started = Mutex::new(Vec::new());
        let now = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut done = BTreeMap::new();
        let result = run(
            nodes.iter().collect(),
            jobs,
            &mut done,
            |n: &N, done: &BTreeMap<String, ()>| {
                // Dependencies are done before a node is even prepared.
                for d in n.deps() {
                    assert!(done.contains_key(d), "{} prepared before {d}", n.0);
                }
                Ok(Prepared::Run(n.0))
            },
            |name: &str| {
                started.lock().unwrap().push(name.to_string());
                let at = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(at, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(if name == "slow" { 150 } else { 30 }));
                now.fetch_sub(1, Ordering::SeqCst);
                if fail.contains(&name) {
                    Err(format!("{name} failed"))
                } else {
                    Ok(())
                }
            },
        );
        (
            started.into_inner().unwrap(),
            most.load(Ordering::SeqCst),
            result,
            done,
        )
    }

    #[test]
    fn dependencies_finish_before_dependents_start() {
        let nodes = [
            N("a", vec![]),
            N("b", vec!["a"]),
            N("c", vec!["a"]),
            N("d", vec!["b", "c"]),
        ];
        let (order, most, result, done) = simulate(&nodes, 4, &[]);
        assert_eq!(result, Ok(()));
        assert_eq!(done.len(), 4);
        assert_eq!(order.first().map(String::as_str), Some("a"));
        assert_eq!(order.last().map(String::as_str), Some("d"));
        // b and c are independent: they ran together.
        assert_eq!(most, 2);
    }

    #[test]
    fn no_more_than_jobs_run_at_once() {
        let nodes: Vec<N> = ["p", "q", "r", "s", "t", "u"]
            .into_iter()
            .map(|n| N(n, vec![]))
            .collect();
        assert_eq!(simulate(&nodes, 2, &[]).1, 2);
        assert_eq!(simulate(&nodes, 1, &[]).1, 1);
        assert_eq!(simulate(&nodes, 0, &[]).1, 1, "0 jobs means one at a time");
    }

    #[test]
    fn after_a_failure_running_nodes_finish_and_none_starts() {
        let nodes = [
            N("fails", vec![]),
            N("slow", vec![]),
            N("later", vec![]),
            N("dependent", vec!["fails"]),
        ];
        let (order, _, result, done) = simulate(&nodes, 2, &["fails"]);
        assert_eq!(result, Err("fails failed".into()));
        // `slow` was running when `fails` failed: it finished and counts.
        // (The two start on two workers at once, in either order.)
        let mut started = order.clone();
        started.sort();
        assert_eq!(started, ["fails", "slow"]);
        assert!(done.contains_key("slow"));
        assert!(!done.contains_key("later") && !done.contains_key("dependent"));
    }

    #[test]
    fn the_first_error_wins_and_a_prepare_error_stops_the_run() {
        let nodes = [N("x", vec![]), N("y", vec![])];
        let mut done = BTreeMap::new();
        let r: Result<(), String> = run(
            nodes.iter().collect(),
            2,
            &mut done,
            |n: &N, _: &BTreeMap<String, ()>| {
                if n.0 == "y" {
                    Err("y cannot resolve".to_string())
                } else {
                    Ok(Prepared::Run(n.0))
                }
            },
            |_: &str| Ok(()),
        );
        assert_eq!(r, Err("y cannot resolve".into()));
        // x had started before y's prepare failed, and finished.
        assert!(done.contains_key("x"));
    }

    #[test]
    fn nodes_already_done_are_not_run_again() {
        let nodes = [N("a", vec![]), N("b", vec!["a"])];
        let mut done = BTreeMap::from([("a".to_string(), ())]);
        let ran = Mutex::new(Vec::new());
        run(
            nodes.iter().collect(),
            1,
            &mut done,
            |n: &N, _: &BTreeMap<String, ()>| Ok::<_, String>(Prepared::Run(n.0)),
            |name: &str| {
                ran.lock().unwrap().push(name);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(ran.into_inner().unwrap(), ["b"]);
    }
}
