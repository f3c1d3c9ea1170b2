//! nearhost node agent.
