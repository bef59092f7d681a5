//! The OpenAPI document, generated from the handlers' annotations and the API crate's
//! schemas.

use utoipa::OpenApi;

use super::openapi_constraints::Constraints;

use directory_api::{
    ChangeEvent, ChangeKind, ErrorBody, ErrorDetail, GroupCount, GroupSubscribers, Health, Lagged,
    MemberRow, MembersResponse, PatternSummary, Record, RegisterBody, RegistryHealth, Reset,
    ServiceCount, ServiceResponse, ServicesResponse, Staleness, Subscription, TargetGroup,
    TopicSubscribers, TopicsResponse,
};

/// The directory's HTTP API.
#[derive(OpenApi)]
#[openapi(
    modifiers(&Constraints),
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
        super::ops::openapi,
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
