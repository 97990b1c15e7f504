//! The `project` operator subcommands: identities' project memberships and
//! their (possibly temporary) roles, as management API requests (pure, no I/O).

use super::client::{Method, Request};
use super::commands::{path, Page};
use super::output::View;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

const PROJECTS: [&str; 3] = ["api", "v1", "projects"];

/// Project memberships of identities.
#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// Give an identity a role in a project.
    AddIdentity {
        /// The project's id.
        project_id: String,
        /// The identity's id.
        identity_id: String,
        #[command(flatten)]
        roles: RoleArgs,
    },
    /// Replace an identity's roles in a project.
    Update {
        /// The project's id.
        project_id: String,
        /// The identity's id.
        identity_id: String,
        #[command(flatten)]
        roles: RoleArgs,
    },
    /// Show an identity's membership of a project.
    Get {
        /// The project's id.
        project_id: String,
        /// The identity's id.
        identity_id: String,
    },
    /// Remove an identity from a project.
    Remove {
        /// The project's id.
        project_id: String,
        /// The identity's id.
        identity_id: String,
    },
    /// List the identities of a project.
    List {
        /// The project's id.
        project_id: String,
        #[command(flatten)]
        page: Page,
    },
}

/// Roles to grant, optionally for a limited time.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// admin, member, viewer, no-access or a custom slug; repeat for several.
    #[arg(long, required = true)]
    pub role: Vec<String>,
    /// Make the grant temporary for this long (e.g. 30m, 1h, 7d).
    #[arg(long)]
    pub temporary_range: Option<String>,
    /// When the temporary grant starts (RFC 3339; default: now).
    #[arg(long, requires = "temporary_range", value_parser = parse_rfc3339)]
    pub temporary_start: Option<String>,
}

impl ProjectCmd {
    /// `now` (RFC 3339) is the default start of a temporary grant; passed in
    /// so that planning stays pure.
    pub fn plan(&self, now: &str) -> (Request, View) {
        let (method, project, identity, body) = match self {
            ProjectCmd::AddIdentity {
                project_id,
                identity_id,
                roles,
            } => {
                // Infisical accepts the short `{role}` form for the common case;
                // several roles or a temporary grant need the `roles` array.
                let body = match (roles.role.as_slice(), &roles.temporary_range) {
                    ([one], None) => json!({ "role": one }),
                    _ => json!({ "roles": roles.grants(now) }),
                };
                (Method::Post, project_id, identity_id, Some(body))
            }
            ProjectCmd::Update {
                project_id,
                identity_id,
                roles,
            } => {
                let body = json!({ "roles": roles.grants(now) });
                (Method::Patch, project_id, identity_id, Some(body))
            }
            ProjectCmd::Get {
                project_id,
                identity_id,
            } => (Method::Get, project_id, identity_id, None),
            ProjectCmd::Remove {
                project_id,
                identity_id,
            } => (Method::Delete, project_id, identity_id, None),
            ProjectCmd::List { project_id, page } => {
                let segs = path(&PROJECTS, &[project_id, "memberships", "identities"]);
                return (
                    page.apply(Request::new(Method::Get, segs)),
                    View::Memberships,
                );
            }
        };
        let segs = path(&PROJECTS, &[project, "memberships", "identities", identity]);
        let mut req = Request::new(method, segs);
        req.body = body;
        (req, View::Membership)
    }
}

impl RoleArgs {
    fn grants(&self, now: &str) -> Vec<Value> {
        self.role
            .iter()
            .map(|role| match &self.temporary_range {
                None => json!({ "role": role, "isTemporary": false }),
                Some(range) => json!({
                    "role": role,
                    "isTemporary": true,
                    "temporaryMode": "relative",
                    "temporaryRange": range,
                    "temporaryAccessStartTime": self.temporary_start.as_deref().unwrap_or(now),
                }),
            })
            .collect()
    }
}

/// Checked here so a typo fails before anything is sent; passed on as typed.
fn parse_rfc3339(s: &str) -> Result<String, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time (e.g. 2030-01-31T12:00:00Z): {e}"))
}
