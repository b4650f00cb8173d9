//! First-factor modes: how the gate learns that the console accepted a password.
//!
//! | file | mode |
//! |---|---|
//! | [`basic`] | the console uses HTTP Basic auth: a calibrated probe request judges the credentials |
//! | [`form`] | the console has a login form: the login POST is judged, its success held until the code |
//! | [`login_body`] | a form login's body read as every console stack reads it |
//! | [`prelogin`] | form mode: the console's pre-login session, kept by the gate for the browser |
//! | [`whoami`] | both modes: the optional check that the console signed in the user judged |

pub mod basic;
pub mod form;
pub mod login_body;
pub mod prelogin;
pub mod whoami;
