//! Job worker, triggered by the SQS jobs queue: runs each delivered background job and reports
//! the records whose job failed, so SQS redelivers only those.

fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::block_on(berth::lambda::main_job_worker())
}
