//! Scenario tests of a pass through fake ports (filled in below).
