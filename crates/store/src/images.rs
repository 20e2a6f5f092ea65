//! Profile images: the bytes in `profile_images`, written in the transaction that changes the
//! identity naming them.

use crate::identities::update_identity_tx;
use crate::rows::{micros, DbResult, RowExt};
use crate::SqlStore;
use async_trait::async_trait;
use portcullis_core::identity::Identity;
use portcullis_core::profile_image::ProfileImage;
use portcullis_core::store::{Effects, ImageStore, StoreResult};
use sqlx::Row;

#[async_trait]
impl ImageStore for SqlStore {
    async fn update_identity_with_image(
        &self,
        identity: &mut Identity,
        image: Option<&ProfileImage>,
        fx: &Effects,
    ) -> StoreResult<()> {
        let next = self
            .invalidating(async {
                let mut tx = self.write.begin().await.db()?;
                let next = update_identity_tx(&mut tx, identity, fx).await?;
                sqlx::query("DELETE FROM profile_images WHERE identity_id = $1")
                    .bind(identity.id.to_string())
                    .execute(&mut *tx)
                    .await
                    .db()?;
                if let Some(i) = image {
                    sqlx::query(
                        "INSERT INTO profile_images (id, identity_id, content_type, bytes, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(i.id.clone())
                    .bind(identity.id.to_string())
                    .bind(i.content_type.clone())
                    .bind(i.bytes.clone())
                    .bind(micros(i.created_at))
                    .execute(&mut *tx)
                    .await
                    .db()?;
                }
                tx.commit().await.db()?;
                Ok(next)
            })
            .await?;
        identity.version = next;
        Ok(())
    }

    async fn profile_image(&self, id: &str) -> StoreResult<Option<ProfileImage>> {
        let row = sqlx::query(
            "SELECT id, identity_id, content_type, bytes, created_at FROM profile_images WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await
        .db()?;
        row.map(|r| {
            Ok(ProfileImage {
                id: r.text("id")?,
                identity_id: r.uuid("identity_id")?,
                content_type: r.text("content_type")?,
                bytes: r.try_get::<Vec<u8>, _>("bytes").db()?,
                created_at: r.time("created_at")?,
            })
        })
        .transpose()
    }
}
