//! Who is asking: one-time tokens now; station and device certificates build on this.

pub mod token;
