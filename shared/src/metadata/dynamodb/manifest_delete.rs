//! Deleting a manifest with its tags, listing, referrer, child and reference items.

#[allow(unused_imports)]
use super::*;

impl DynamoMetadataStore {
    /// One attempt at deleting a manifest: `None` when something changed underneath it.
    pub(super) async fn try_delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[Write],
    ) -> Result<Option<bool>, MetadataError> {
        let r = repo.as_str();
        let m = digest.to_string();
        let mkey = manifest_key(r, &m);
        let Some(item) = self.get(&mkey, None).await? else {
            return Ok(Some(false));
        };
        let record = decode_manifest(repo, &item)?;
        let tokens = string_set(&item, "tokens")?;
        let version = match item.get("version") {
            None => None,
            Some(v) => Some(v.as_n().map_err(|_| corrupt("attribute version is not a number"))?.clone()),
        };
        let version_condition = |write: Write| match &version {
            Some(v) => write.when("#version = :version").value(":version", n(v)),
            None => write.when("attribute_not_exists(#version)"),
        };

        // refused while an existing (or pending) index of this repository lists it
        let now = wall_now();
        let mut parents: BTreeMap<String, bool> = BTreeMap::new();
        let mut orphans = Vec::new();
        for child_item in self.query_all(&format!("CHILD#{r}#{m}"), None).await? {
            let sk = string(&child_item, SK)?;
            let (parent, _token) = sk.rsplit_once('#').ok_or_else(|| corrupt(format!("child link {sk:?}")))?;
            if parent == m {
                continue;
            }
            *parents.entry(parent.to_string()).or_default() |= is_pending(&child_item, now);
            orphans.push(item_key(&child_item)?);
        }
        if !parents.is_empty() {
            let found = self.batch_get(parents.keys().map(|p| manifest_key(r, p)), Some(KEYS_ONLY)).await?;
            if let Some((parent, _)) =
                parents.iter().find(|(p, pending)| **pending || found.contains_key(&manifest_key(r, p)))
            {
                return Err(MetadataError::ReferencedByIndex { child: digest.clone(), parent: parse_digest(parent)? });
            }
        }

        // its tags: the reverse index is a superset; only tags still pointing here are deleted
        let tagged = self.query_all(&format!("TAGGED#{r}#{m}"), Some(KEYS_ONLY)).await?;
        let tag_names = tagged.iter().map(|t| string(t, SK).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
        let tags = self.batch_get(tag_names.iter().map(|t| tag_key(r, t)), Some("#digest")).await?;
        let mut tag_groups = Vec::new();
        for name in &tag_names {
            let mut group = vec![Write::delete(tagged_key(r, &m, name))];
            let live =
                tags.get(&tag_key(r, name)).and_then(|t| opt_string(t, "digest").ok().flatten()) == Some(m.as_str());
            if live {
                group.push(Write::delete(tag_key(r, name)).when("#digest = :digest").value(":digest", s(&m)));
            }
            tag_groups.push(group);
        }

        let mut writes = vec![
            version_condition(Write::delete(mkey.clone())).role(Role::Manifest),
            Write::delete(manifest_index_key(r, &m)),
        ];
        if let Some(subject) = &record.subject {
            writes.push(Write::delete(referrer_key(r, &subject.to_string(), &m)));
        }
        writes.extend(events.iter().cloned());
        let max = self.max_transaction_items.max(3 + events.len());
        let tag_count: usize = tag_groups.iter().map(Vec::len).sum();
        if writes.len() + tag_count > max {
            // too many tags for one transaction: delete them first, each batch guarded by the
            // manifest's version, then start over
            let mut groups = tag_groups.into_iter().peekable();
            while groups.peek().is_some() {
                let mut batch = vec![version_condition(Write::check(mkey.clone(), "")).role(Role::Manifest)];
                while groups.peek().is_some_and(|g| batch.len() + g.len() <= max) {
                    batch.extend(groups.next().into_iter().flatten());
                }
                match self.transact(batch).await {
                    Ok(()) => {}
                    Err(TxFailure::Failed(e)) => return Err(e),
                    Err(TxFailure::Cancelled(reasons)) => {
                        if let Some(e) = validation_failure(&reasons) {
                            return Err(e);
                        }
                        return Ok(None);
                    }
                }
            }
            return Ok(None);
        }
        writes.extend(tag_groups.into_iter().flatten());

        // its own child links and blob references: in the transaction while they fit
        let mut cleanup: Vec<Key> = Vec::new();
        for token in &tokens {
            for child in distinct(&record.children) {
                let c = child.to_string();
                if c != m {
                    cleanup.push(child_key(r, &c, &m, token));
                }
            }
            for blob in distinct(&record.blobs) {
                cleanup.push(ref_key(r, &m, &blob.to_string(), token));
            }
        }
        let inline = cleanup.len().min(max - writes.len());
        let later = cleanup.split_off(inline);
        writes.extend(cleanup.into_iter().map(Write::delete));

        match self.transact(writes).await {
            Ok(()) => {
                let leftovers: Vec<Key> = later.into_iter().chain(orphans).collect();
                if let Err(e) = self.batch_delete(leftovers).await {
                    tracing::warn!(repo = r, digest = %m, error = %e,
                        "manifest deleted, but some of its reference items remain; they expire as orphans");
                }
                Ok(Some(true))
            }
            Err(TxFailure::Failed(e)) => Err(e),
            Err(TxFailure::Cancelled(reasons)) => match validation_failure(&reasons) {
                Some(e) => Err(e),
                None => Ok(None),
            },
        }
    }
}
