//! Modules of `agent/src/`, compiled from the agent's own files (the agent is a binary crate
//! with no library target). Only those that need nothing else of the agent crate; what of
//! them the fuzz targets do not call is unused here.

#[path = "../../../agent/src/net.rs"]
pub mod net;
#[path = "../../../agent/src/users.rs"]
pub mod users;
