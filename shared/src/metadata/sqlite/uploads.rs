//! Upload sessions: the [`UploadSessions`] capability.

#[allow(unused_imports)]
use super::*;

#[async_trait]
impl UploadSessions for SqliteMetadataStore {
    async fn create_upload(&self, session: &UploadSession) -> Result<(), MetadataError> {
        let s = session.clone();
        let offset = to_i64(s.offset, "upload offset")?;
        self.write(move |tx| {
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO uploads (id, repo, byte_offset, hash_state, created_at, updated_at, staging, owner)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(backend)?
                .execute(params![
                    s.id.as_str(),
                    s.repo.as_str(),
                    offset,
                    s.hash_state,
                    s.created_at,
                    s.updated_at,
                    s.staging,
                    s.owner
                ])
                .map_err(backend)?;
            if inserted == 0 {
                return Err(MetadataError::Conflict(format!("upload {}", s.id)));
            }
            Ok(())
        })
        .await
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, MetadataError> {
        let id = id.as_str().to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(UPLOAD_SQL).map_err(backend)?;
            let mut rows = stmt.query(params![id]).map_err(backend)?;
            rows.next().map_err(backend)?.map(decode_upload).transpose()
        })
        .await
    }

    async fn advance_upload(&self, session: &UploadSession, expected_offset: u64) -> Result<(), MetadataError> {
        let s = session.clone();
        let (offset, expected) = (to_i64(s.offset, "upload offset")?, to_i64(expected_offset, "upload offset")?);
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE uploads SET byte_offset = ?2, hash_state = ?3, updated_at = ?4, staging = ?6
                     WHERE id = ?1 AND byte_offset = ?5",
                )
                .map_err(backend)?
                .execute(params![s.id.as_str(), offset, s.hash_state, s.updated_at, expected, s.staging])
                .map_err(backend)?;
            if n == 0 {
                return Err(MetadataError::Conflict(format!("upload {}", s.id)));
            }
            Ok(())
        })
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool, MetadataError> {
        let id = id.as_str().to_string();
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM uploads WHERE id = ?1")
                .map_err(backend)?
                .execute(params![id])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn stale_uploads(&self, before: UnixTime) -> Result<Vec<UploadSession>, MetadataError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(STALE_UPLOADS_SQL).map_err(backend)?;
            let mut rows = stmt.query(params![before]).map_err(backend)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                out.push(decode_upload(row)?);
            }
            Ok(out)
        })
        .await
    }
}
