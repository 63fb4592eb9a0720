//! Who is asking: one-time tokens, admin API operators (API keys, operator certificates) and
//! their console sessions; station and device certificates build on this.

pub mod failures;
pub mod operator;
pub mod operator_profile;
pub mod session;
pub mod token;
