//! Answers for RPCs whose logic has not landed yet.
//!
//! A service whose behaviour arrives in a later piece of work must say so plainly
//! (`UNIMPLEMENTED` naming the RPC and what brings it), never return a fake success.

use tonic::Status;

/// `UNIMPLEMENTED` for `rpc`, naming the work that brings it.
pub fn not_implemented(service: &str, rpc: &str, arrives_with: &str) -> Status {
    Status::unimplemented(format!(
        "{service}.{rpc} is not implemented yet: it arrives with {arrives_with}"
    ))
}

/// Implements a generated tonic service trait whose every unary RPC answers
/// [`not_implemented`].
///
/// ```ignore
/// ferry_server::pending_service! {
///     impl RouterService for RouterAdmin;
///     service ferry_api::service_names::ROUTER, arrives_with "the router work (issue #7)";
///     get_router_status(GetRouterStatusRequest) -> GetRouterStatusResponse;
/// }
/// ```
#[macro_export]
macro_rules! pending_service {
    (
        impl $($trait:ident)::+ for $ty:ty;
        service $svc:expr, arrives_with $why:expr;
        $( $method:ident($req:ty) -> $res:ty; )*
    ) => {
        #[tonic::async_trait]
        impl $($trait)::+ for $ty {
            $(
                async fn $method(
                    &self,
                    _request: tonic::Request<$req>,
                ) -> Result<tonic::Response<$res>, tonic::Status> {
                    Err($crate::pending::not_implemented($svc, stringify!($method), $why))
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    mod api {
        #[tonic::async_trait]
        pub trait Admin: Send + Sync + 'static {
            async fn get_status(
                &self,
                request: tonic::Request<()>,
            ) -> Result<tonic::Response<String>, tonic::Status>;
        }
    }

    struct Stub;

    crate::pending_service! {
        impl self::api::Admin for Stub;
        service "ferry.test.v1.Admin", arrives_with "a later issue";
        get_status(()) -> String;
    }

    #[tokio::test]
    async fn macro_answers_unimplemented() {
        use api::Admin as _;
        let status = Stub.get_status(tonic::Request::new(())).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status.message().contains("ferry.test.v1.Admin.get_status"));
    }

    #[test]
    fn names_the_rpc_and_the_work_that_brings_it() {
        let status =
            super::not_implemented("ferry.router.v1.RouterAdmin", "get_status", "issue #7");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(
            status
                .message()
                .contains("ferry.router.v1.RouterAdmin.get_status")
        );
        assert!(status.message().contains("issue #7"));
    }
}
