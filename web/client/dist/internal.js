//! Bookkeeping shapes shared by the client and the dialect handlers (not part of the public API).
export {};
