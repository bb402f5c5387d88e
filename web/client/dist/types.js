//! The public types of the SDK: options, events and results. Wire frames come from the
//! generated files (docs/schema), re-exported here under stable names.
export {};
