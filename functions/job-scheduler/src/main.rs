//! Job scheduler, triggered by an EventBridge schedule: enqueues the housekeeping jobs (upload
//! expiry) on every tick.

fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::block_on(berth::lambda::main_job_scheduler())
}
