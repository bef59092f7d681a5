//! The OpenAPI document, generated from the handlers' annotations and the API crate's
//! schemas, and the route that serves it.

use axum::Json;
use axum::response::IntoResponse;
use utoipa::OpenApi;

use super::error::ApiError;
use super::openapi_constraints::Constraints;
use super::openapi_examples::Examples;
use super::query::NoQuery;
use crate::acl::Access;

use directory_api::{
    ChangeEvent, ChangeKind, ErrorBody, ErrorDetail, GroupCount, GroupSubscribers, Health, Lagged,
    MemberRow, MembersResponse, PatternSummary, Record, RegisterBody, RegistryHealth, Reset,
    ServiceCount, ServiceResponse, ServicesResponse, Staleness, Subscription, TargetGroup,
    TopicSubscribers, TopicsResponse,
};

/// The directory's HTTP API.
#[derive(OpenApi)]
#[openapi(
    modifiers(&Constraints, &Examples),
    info(
        title = "directory",
        description = "Service directory: register instances with a TTL lease, look them up (filters, blocking queries), watch changes. \
Errors always have the shape {\"error\":{\"code\":\"snake_case\",\"message\":\"...\"}}. \
Names (service, instance) match [a-z0-9][a-z0-9._-]{0,62}."
    ),
    paths(
        super::instances::register,
        super::instances::heartbeat,
        super::instances::deregister,
        super::instances::get_instance,
        super::services::list,
        super::services::lookup,
        super::topics::list,
        super::topics::subscribers,
        super::watch::watch,
        super::cluster::members,
        super::prometheus_sd::targets,
        super::ops::health,
        super::ops::metrics,
        openapi,
    ),
    components(schemas(
        Record,
        RegisterBody,
        ServicesResponse,
        ServiceCount,
        ServiceResponse,
        ChangeEvent,
        ChangeKind,
        ErrorBody,
        ErrorDetail,
        Health,
        RegistryHealth,
        MembersResponse,
        MemberRow,
        Staleness,
        TargetGroup,
        Lagged,
        Reset,
        Subscription,
        TopicsResponse,
        PatternSummary,
        GroupCount,
        TopicSubscribers,
        GroupSubscribers
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses(
        (status = 200, description = "OpenAPI 3 document", body = Object),
        (status = 400, description = "invalid_query: the route takes no query parameter", body = ErrorBody),
        (status = 401, description = "unauthorized: ACLs are on, the request has no token and anonymous requests may do nothing", body = ErrorBody),
    ),
    tag = "ops"
)]
pub async fn openapi(access: Access, _: NoQuery) -> Result<impl IntoResponse, ApiError> {
    access.any()?;
    Ok(Json(ApiDoc::openapi()))
}
