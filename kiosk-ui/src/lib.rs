//! The associate console and the customer kiosk screens of store-agent: templates,
//! embedded static assets and their HTTP routes, behind a data interface the agent
//! implements.
//!
//! Nothing is built here yet: the screens come with their own issue, after the local
//! store (agent), the device layer (firmware-interfaces) and the cloud sync exist.
//! The crate is a workspace member now so that the layout is fixed from the start.
