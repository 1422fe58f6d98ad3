//! One `Execute` call followed to its end: the operation stream read while
//! kiln watches Ctrl-C and the step's deadline (either cancels the
//! operation), a broken stream resumed with `WaitExecution` a bounded
//! number of times.

use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    ActionResult, Digest, ExecuteRequest, ExecuteResponse, WaitExecutionRequest,
    execution_client::ExecutionClient,
};
use bazel_remote_apis::google::longrunning::{
    CancelOperationRequest, Operation, operation, operations_client::OperationsClient,
};
use prost::Message;
use tonic::Status;

use super::RemoteError;
use super::client::{Client, retryable, status_text};

/// How often the stream's reader looks at Ctrl-C and the deadline.
const TICK: Duration = Duration::from_millis(200);
/// How long past the action's own timeout kiln waits for the engine to say so.
const GRACE: Duration = Duration::from_secs(30);
/// How many times a broken stream is resumed or the action re-sent.
const RESUMES: u32 = 5;

/// How an execution ended, short of a result.
#[derive(Debug)]
pub enum Ended {
    /// The engine lacks inputs it was told it had (`FAILED_PRECONDITION`):
    /// upload again and retry once.
    MissingInputs(String),
    Interrupted,
    TimedOut,
    Failed(RemoteError),
}

/// The engine's result for `action`, run (or answered from its cache),
/// within `timeout`.
pub fn execute(
    client: &Client,
    action: &Digest,
    timeout: Duration,
    skip_cache_lookup: bool,
) -> Result<(ActionResult, bool), Ended> {
    let deadline = Instant::now() + timeout + GRACE;
    client.block_on(async {
        let mut name: Option<String> = None;
        let mut resumes = 0;
        loop {
            let stream = match &name {
                None => {
                    let mut c =
                        ExecutionClient::new(client.channel()).max_decoding_message_size(64 << 20);
                    let r = client.request(ExecuteRequest {
                        instance_name: client.instance.clone(),
                        skip_cache_lookup,
                        action_digest: Some(action.clone()),
                        execution_policy: None,
                        results_cache_policy: None,
                        digest_function: 0,
                        inline_stdout: true,
                        inline_stderr: true,
                        inline_output_files: Vec::new(),
                    });
                    super::client::bounded(c.execute(r)).await
                }
                Some(n) => {
                    let mut c =
                        ExecutionClient::new(client.channel()).max_decoding_message_size(64 << 20);
                    let r = client.request(WaitExecutionRequest { name: n.clone() });
                    super::client::bounded(c.wait_execution(r)).await
                }
            };
            let outcome = match stream {
                Ok(s) => follow(client, s.into_inner(), &mut name, deadline).await,
                Err(s) => Err(Broken(s)),
            };
            match outcome {
                Ok(done) => return done,
                Err(Broken(s))
                    if (retryable(&s) || s.code() == tonic::Code::NotFound)
                        && resumes < RESUMES =>
                {
                    resumes += 1;
                    // An operation the engine forgot is sent again.
                    if s.code() == tonic::Code::NotFound {
                        name = None;
                    }
                    tokio::time::sleep(Duration::from_millis(200 << resumes.min(4))).await;
                }
                Err(Broken(s)) => {
                    return Err(Ended::Failed(RemoteError::Engine(format!(
                        "the execution stream broke: {}",
                        status_text(&s)
                    ))));
                }
            }
        }
    })
}

/// A stream that ended without a finished operation.
struct Broken(Status);

/// Read `stream` until its operation is done, Ctrl-C, or the deadline.
async fn follow(
    client: &Client,
    mut stream: tonic::codec::Streaming<Operation>,
    name: &mut Option<String>,
    deadline: Instant,
) -> Result<Result<(ActionResult, bool), Ended>, Broken> {
    loop {
        if crate::interrupt::interrupted() {
            cancel(client, name.as_deref()).await;
            return Ok(Err(Ended::Interrupted));
        }
        if Instant::now() >= deadline {
            cancel(client, name.as_deref()).await;
            return Ok(Err(Ended::TimedOut));
        }
        let next = match tokio::time::timeout(TICK, stream.message()).await {
            Err(_) => continue,
            Ok(next) => next,
        };
        let op = match next {
            Ok(Some(op)) => op,
            Ok(None) => return Err(Broken(Status::unavailable("the stream ended early"))),
            Err(s) => return Err(Broken(s)),
        };
        if !op.name.is_empty() {
            *name = Some(op.name.clone());
        }
        if op.done {
            return Ok(finished(op));
        }
    }
}

/// What a finished operation says.
fn finished(op: Operation) -> Result<(ActionResult, bool), Ended> {
    let any = match op.result {
        Some(operation::Result::Response(any)) => any,
        Some(operation::Result::Error(st)) => {
            return Err(Ended::Failed(RemoteError::Engine(format!(
                "code {}: {}",
                st.code,
                super::clean(&st.message)
            ))));
        }
        None => {
            return Err(Ended::Failed(RemoteError::Protocol(
                "a finished operation without a result".into(),
            )));
        }
    };
    let response = ExecuteResponse::decode(any.value.as_slice()).map_err(|e| {
        Ended::Failed(RemoteError::Protocol(format!(
            "an execute response that does not decode: {e}"
        )))
    })?;
    if let Some(st) = &response.status
        && st.code != 0
    {
        return Err(match st.code {
            // FAILED_PRECONDITION: inputs missing from the CAS.
            9 => Ended::MissingInputs(super::clean(&st.message)),
            // DEADLINE_EXCEEDED: the action's timeout.
            4 => Ended::TimedOut,
            _ => Ended::Failed(RemoteError::Engine(format!(
                "code {}: {}",
                st.code,
                super::clean(&st.message)
            ))),
        });
    }
    let result = response.result.ok_or_else(|| {
        Ended::Failed(RemoteError::Protocol(
            "an execute response without a result".into(),
        ))
    })?;
    Ok((result, response.cached_result))
}

/// Ask the engine to stop operation `name` (best effort: kiln stops
/// waiting either way).
async fn cancel(client: &Client, name: Option<&str>) {
    let Some(name) = name else { return };
    let mut c = OperationsClient::new(client.channel());
    let r = client.request(CancelOperationRequest {
        name: name.to_string(),
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), c.cancel_operation(r)).await;
}
