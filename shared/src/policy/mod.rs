//! Registry policies: image cleanup (retention) rules with their schedule and run history, and
//! image protection (tag immutability) rules. Both select images and tags with the glob
//! [`pattern::Pattern`]s of the NCR guide; schedules are five-field UTC [`crate::cron::Cron`] expressions.

pub mod cleanup;
pub mod pattern;
pub mod protection;
