//! `/api/v1/projects/{projectId}/organization`, a tokengate extension (Infisical
//! has no such route: its projects are created inside an organization). A
//! project belongs to one organization: the one whose identity's membership
//! first named it, or the one the admin key sets here. Only the admin key may
//! read or set it: the owner is the boundary identity callers are held to, so
//! none of them may move it, and reading it would tell one organization about
//! another's projects.

use super::input::{self, Body};
use super::reply::{ok, ApiError, Keyed};
use super::{ApiResponse, Ctx};
use crate::store::OwnerChange;
use serde::Serialize;
use serde_json::json;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProjectView<'a> {
    id: &'a str,
    /// `null` while no organization has claimed the project.
    organization_id: Option<&'a str>,
}

fn answer(project: &str, org: Option<&str>) -> Result<ApiResponse, ApiError> {
    ok(&Keyed(
        "project",
        ProjectView {
            id: project,
            organization_id: org,
        },
    ))
}

fn admin_key_only(cx: &Ctx<'_>) -> Result<(), ApiError> {
    match cx.caller.org() {
        None => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "a project's organization is read and set with the admin key only",
        )),
    }
}

pub(crate) async fn get(cx: &Ctx<'_>, raw_project: &str) -> Result<ApiResponse, ApiError> {
    admin_key_only(cx)?;
    let project = input::project_id(raw_project)?;
    let owner = cx.store.project_owner(&project).await?;
    answer(&project, owner.as_deref())
}

pub(crate) async fn set(cx: &Ctx<'_>, raw_project: &str) -> Result<ApiResponse, ApiError> {
    admin_key_only(cx)?;
    let project = input::project_id(raw_project)?;
    let body = Body::parse(cx.req.body)?;
    let org = input::scope_id(
        "organizationId",
        body.fields().required_str("organizationId")?.trim(),
    )?;
    match cx.store.set_project_owner(&project, &org).await? {
        OwnerChange::Set { previous } => {
            cx.changed(
                "project.organization_set",
                json!({"projectId": project}),
                Some(json!({"organizationId": previous})),
                Some(json!({"organizationId": org})),
            );
            answer(&project, Some(&org))
        }
        // Moving the project would carry those members into another
        // organization's project: they must be removed first.
        OwnerChange::MembersOfAnotherOrganization => Err(ApiError::bad_request(format!(
            "project {project} has members of another organization; remove them before giving it to {org}"
        ))),
    }
}
