//! Metering as pure functions: what a node or a pod held, in whole seconds, cut into one
//! immutable record per period (an hour) it ran in, priced, and summed up the tree. No IO, no clock:
//! every function is told the time.
//!
//! - [`records`]: an [`Interval`](records::Interval) (a node's instance from launch to end,
//!   a pod's requests from start to deletion) and the records it is owed
//!   ([`records::reconcile`]): one per period once that period of it is final, each with
//!   an id derived from what it measures, so that writing it twice, from a restart or a
//!   second server, stores it once; a fact learned late becomes a correction, a new record
//!   linked to the one it corrects, never a rewrite.
//! - [`rates`]: prices per vCPU-hour and GiB-hour in integer micro-dollars, by default
//!   derived from the catalogue's on-demand prices, and a record's cost.
//! - [`rollup`]: totals by any grouping, exact: integers of the smallest units
//!   (milli-vCPU-seconds, MiB-seconds, micro-dollars), so that a total is the sum of its
//!   parts.

#![warn(missing_docs)]

pub mod rates;
pub mod records;
pub mod rollup;

pub use rates::RateCard;
pub use records::{
    Interval, Measure, Owner, Size, Subject, UsageRecord, ceil_second, period_of, reconcile,
};
pub use rollup::Totals;
