//! Who is asking: one-time tokens, admin API operators (API keys, operator certificates); station
//! and device certificates build on this.

pub mod failures;
pub mod operator;
pub mod operator_profile;
pub mod token;
