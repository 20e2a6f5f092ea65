//! Profile images (see `crate::profile_image`), stored beside their identity.

use super::{Effects, StoreResult};
use crate::identity::Identity;
use crate::profile_image::ProfileImage;
use async_trait::async_trait;

#[async_trait]
pub trait ImageStore: Send + Sync + 'static {
    /// Replaces `identity` as [`super::IdentityStore::update_identity`] does and, in the same
    /// transaction, its profile image: `image` in place of any it had, or none. The identity's
    /// images go with it when it is deleted.
    async fn update_identity_with_image(
        &self,
        identity: &mut Identity,
        image: Option<&ProfileImage>,
        fx: &Effects,
    ) -> StoreResult<()>;
    async fn profile_image(&self, id: &str) -> StoreResult<Option<ProfileImage>>;
}
