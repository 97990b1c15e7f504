//! `/api/v1/projects/{projectId}/memberships/identities[/{identityId}]`: an
//! identity's roles in a project, including Infisical's temporary roles
//! (`relative` mode: active from the start time for the given range). An
//! identity caller sees and manages only memberships of identities of its own
//! organization. A project belongs to one organization (the first
//! membership written claims it, or the admin key sets it: `projects.rs`),
//! and no caller, the admin key included, adds an identity of another
//! organization to it.

use super::identities::{self, has_token_auth};
use super::input::{self, paging, Body, Fields};
use super::reply::{ok, ApiError, Keyed};
use super::views::{MembershipList, MembershipView};
use super::{snapshot, ApiResponse, Ctx};
use crate::model::Millis;
use crate::model::{
    parse_rfc3339, parse_temporary_range, FieldError, Identity, Membership, RoleGrant,
    MAX_TIMESTAMP,
};
use crate::store::{MembershipWrite, Store};
use crate::token::Id;
use serde_json::{json, Value};

/// Infisical's only temporary mode.
const RELATIVE: &str = "relative";
/// Enough for any real grant list; bounds the stored record.
const MAX_ROLES: usize = 32;

fn project(raw: &str) -> Result<String, ApiError> {
    Ok(input::project_id(raw)?)
}

fn not_member(identity: Id, project: &str) -> ApiError {
    ApiError::not_found(format!(
        "identity {identity} is not a member of project {project}"
    ))
}

/// One `roles[i]` entry. Temporary fields are ignored unless `isTemporary`.
fn grant(f: &Fields<'_>) -> Result<RoleGrant, FieldError> {
    let role = input::role_slug(&f.path("role"), f.required_str("role")?)?;
    let mut g = RoleGrant {
        id: Id::random(),
        role,
        is_temporary: false,
        temporary_mode: None,
        temporary_range: None,
        temporary_access_start_time: None,
        temporary_access_end_time: None,
    };
    if !f.bool("isTemporary")?.unwrap_or(false) {
        return Ok(g);
    }
    let mode = f.required_str("temporaryMode")?;
    if mode != RELATIVE {
        return Err(FieldError::new(
            &f.path("temporaryMode"),
            "must be \"relative\"",
        ));
    }
    let range = f.required_str("temporaryRange")?.trim();
    let range_ms = parse_temporary_range(range).ok_or_else(|| {
        FieldError::new(
            &f.path("temporaryRange"),
            "must be a positive duration such as \"30m\", \"1h\" or \"2d\"",
        )
    })?;
    let start = parse_rfc3339(f.required_str("temporaryAccessStartTime")?).ok_or_else(|| {
        FieldError::new(
            &f.path("temporaryAccessStartTime"),
            "must be an RFC 3339 timestamp",
        )
    })?;
    let end = start
        .checked_add(range_ms)
        .filter(|&e| e <= MAX_TIMESTAMP)
        .ok_or_else(|| FieldError::new(&f.path("temporaryRange"), "ends too far in the future"))?;
    g.is_temporary = true;
    g.temporary_mode = Some(RELATIVE.to_string());
    g.temporary_range = Some(range.to_string());
    g.temporary_access_start_time = Some(start);
    g.temporary_access_end_time = Some(end);
    Ok(g)
}

/// `{role}` (one permanent role) or `{roles: [...]}`, not both.
fn grants(body: &Body) -> Result<Vec<RoleGrant>, FieldError> {
    let f = body.fields();
    let (single, list) = (f.str("role")?, f.array("roles")?);
    match (single, list) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "roles",
            "give either role or roles, not both",
        )),
        (None, None) => Err(FieldError::new("roles", "is required")),
        (Some(_), None) => Ok(vec![grant(&f)?]),
        (None, Some(list)) => {
            if list.is_empty() || list.len() > MAX_ROLES {
                return Err(FieldError::new(
                    "roles",
                    format!("must hold 1 to {MAX_ROLES} roles"),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(obj) => grant(&Fields {
                        obj,
                        at: format!("roles[{i}]."),
                    }),
                    _ => Err(FieldError::new(&format!("roles[{i}]"), "must be an object")),
                })
                .collect()
        }
    }
}

/// What a membership record is about.
fn target(identity: &Identity, project: &str) -> Value {
    json!({"identityId": identity.id.to_string(), "projectId": project})
}

/// The membership answer with the member's name and auth methods.
async fn answer(
    cx: &Ctx<'_>,
    m: &Membership,
    identity: &Identity,
) -> Result<ApiResponse, ApiError> {
    let has = has_token_auth(cx.store, identity.id).await?;
    ok(&Keyed(
        "identityMembership",
        MembershipView::new(m, Some((identity, has))),
    ))
}

/// Writes `m` (which was `before`, if anything) and notes it as `event`.
async fn put(
    cx: &Ctx<'_>,
    m: &Membership,
    identity: &Identity,
    before: Option<&Membership>,
    event: &'static str,
) -> Result<ApiResponse, ApiError> {
    match cx.store.put_membership(m).await? {
        MembershipWrite::Written => {}
        MembershipWrite::NoIdentity => {
            return Err(ApiError::not_found(format!(
                "identity {} not found",
                identity.id
            )))
        }
        // Said the same way to every caller: it names neither the owner nor
        // whether the project has members.
        MembershipWrite::OtherOrganization => {
            return Err(ApiError::forbidden(format!(
                "project {} belongs to another organization",
                m.project_id
            )))
        }
    }
    cx.changed(
        event,
        target(identity, &m.project_id),
        before.and_then(|b| snapshot(MembershipView::new(b, None))),
        snapshot(MembershipView::new(m, None)),
    );
    answer(cx, m, identity).await
}

pub(crate) async fn create(
    cx: &Ctx<'_>,
    raw_project: &str,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
    let project = project(raw_project)?;
    let identity = identities::load(cx, raw_id).await?;
    cx.caller.may_act_on(&identity.role)?;
    let roles = grants(&Body::parse(cx.req.body)?)?;
    if cx
        .store
        .get_membership(&project, identity.id)
        .await?
        .is_some()
    {
        return Err(ApiError::bad_request(format!(
            "identity {} is already a member of project {project}",
            identity.id
        )));
    }
    let now: Millis = cx.req.now;
    let m = Membership {
        id: Id::random(),
        project_id: project,
        identity_id: identity.id,
        roles,
        created_at: now,
        updated_at: now,
    };
    put(cx, &m, &identity, None, "membership.added").await
}

pub(crate) async fn get(
    cx: &Ctx<'_>,
    raw_project: &str,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
    let project = project(raw_project)?;
    let identity = identities::load(cx, raw_id).await?;
    let m = cx
        .store
        .get_membership(&project, identity.id)
        .await?
        .ok_or_else(|| not_member(identity.id, &project))?;
    answer(cx, &m, &identity).await
}

pub(crate) async fn update(
    cx: &Ctx<'_>,
    raw_project: &str,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
    let project = project(raw_project)?;
    let identity = identities::load(cx, raw_id).await?;
    cx.caller.may_act_on(&identity.role)?;
    let roles = grants(&Body::parse(cx.req.body)?)?;
    let mut m = cx
        .store
        .get_membership(&project, identity.id)
        .await?
        .ok_or_else(|| not_member(identity.id, &project))?;
    let before = m.clone();
    m.roles = roles;
    m.updated_at = cx.req.now;
    put(cx, &m, &identity, Some(&before), "membership.updated").await
}

pub(crate) async fn delete(
    cx: &Ctx<'_>,
    raw_project: &str,
    raw_id: &str,
) -> Result<ApiResponse, ApiError> {
    let project = project(raw_project)?;
    let identity = identities::load(cx, raw_id).await?;
    cx.caller.may_act_on(&identity.role)?;
    let m = cx
        .store
        .delete_membership(&project, identity.id)
        .await?
        .ok_or_else(|| not_member(identity.id, &project))?;
    cx.changed(
        "membership.removed",
        target(&identity, &project),
        snapshot(MembershipView::new(&m, None)),
        None,
    );
    answer(cx, &m, &identity).await
}

pub(crate) async fn list(cx: &Ctx<'_>, raw_project: &str) -> Result<ApiResponse, ApiError> {
    let project = project(raw_project)?;
    let (offset, limit) = paging(cx.req.query)?;
    let page = cx
        .store
        .list_memberships(&project, cx.caller.org(), offset, limit)
        .await?;
    let mut members = Vec::with_capacity(page.items.len());
    for m in &page.items {
        let identity = lookup(cx.store, m.identity_id).await?;
        members.push(identity);
    }
    let identity_memberships = page
        .items
        .iter()
        .zip(&members)
        .map(|(m, i)| MembershipView::new(m, i.as_ref().map(|(i, t)| (i, *t))))
        .collect();
    ok(&MembershipList {
        identity_memberships,
        total_count: page.total,
    })
}

async fn lookup(store: &dyn Store, id: Id) -> Result<Option<(Identity, bool)>, ApiError> {
    match store.get_identity(id).await? {
        None => Ok(None),
        Some(i) => Ok(Some((i, has_token_auth(store, id).await?))),
    }
}
