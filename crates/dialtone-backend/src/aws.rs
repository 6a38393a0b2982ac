//! The `aws` backend: clusters on Amazon EC2 through the `aws` provider, their Kubernetes
//! APIs reached at their load balancers with the CAs Dialtone made for them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
pub use dialtone_aws::MachineImages;
use dialtone_aws::access::AwsClusterAccess;
use dialtone_aws::userdata::TokenWebhook;
use dialtone_aws::{AwsOptions, AwsProvider};
use dialtone_controllers::LifecycleOptions;
use dialtone_server::backend::{Backend, BackendContext, BuildBackend};

/// What `dialtone server --provider aws` is given.
pub struct AwsBackendOptions {
    /// Where each cluster's CAs and tokens are kept (`aws/clusters/` in it).
    pub data_dir: PathBuf,
    /// Every AWS call goes here instead (a moto server).
    pub endpoint_url: Option<String>,
    /// The machine images instances boot.
    pub images: MachineImages,
    /// The region whose answer shows, at startup, that the credentials work.
    pub check_region: String,
    /// The controller's waits relative to a real cloud's (1); lower for a fake one.
    pub lifecycle_time_scale: f64,
}

/// The aws backend, built when the server is ready for it.
pub fn backend(options: AwsBackendOptions) -> BuildBackend {
    Box::new(move |context| Box::pin(build(options, context)))
}

async fn build(options: AwsBackendOptions, context: BackendContext) -> anyhow::Result<Backend> {
    let provider = Arc::new(
        AwsProvider::new(AwsOptions {
            endpoint_url: options.endpoint_url.clone(),
            images: options.images,
            access_keys: None,
            secrets_dir: options.data_dir.join("aws").join("clusters"),
            token_webhook: Some(TokenWebhook {
                server_url: context.server_url.clone(),
                ca_pem: context.server_ca_pem.clone(),
            }),
        })
        .await,
    );
    let zones = provider.check(&options.check_region).await.with_context(|| {
        format!(
            "AWS does not answer in {} at {}: check the credentials (the SDK's standard chain: AWS_ACCESS_KEY_ID, AWS_PROFILE, …) and --aws-endpoint-url",
            options.check_region,
            options.endpoint_url.as_deref().unwrap_or("AWS's endpoints"),
        )
    })?;
    tracing::info!(
        region = options.check_region,
        zones = zones.len(),
        "AWS answers"
    );
    let access = AwsClusterAccess::new(provider.clone());
    context.tasks.spawn("cluster-endpoints", {
        let access = access.clone();
        move |_| access.clone().refresh_loop()
    });
    Ok(Backend {
        provider,
        clusters: access,
        lifecycle: LifecycleOptions::for_time_scale(options.lifecycle_time_scale),
        operator_routes: None,
    })
}
