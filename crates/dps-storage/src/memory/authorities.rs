//! Certificate authorities and credential policies in the memory store.

use dps_model::{CredentialPolicy, ETag, IdScope, Precondition};

use super::MemoryStore;
use crate::authorities::{self, StoredCertificateAuthority};
use crate::error::{Entity, StoreError, StoreResult};
use crate::rules;
use crate::store::Written;
use crate::time;

impl MemoryStore {
    pub(super) fn create_authority(
        &self,
        id_scope: &IdScope,
        mut authority: StoredCertificateAuthority,
    ) -> StoreResult<StoredCertificateAuthority> {
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let name = authority.name().to_owned();
        if data.authorities.contains_key(&name) {
            return Err(StoreError::AlreadyExists {
                entity: Entity::CertificateAuthority,
                id: name,
            });
        }
        authorities::stamp_authority(&mut authority);
        let authority = rules::normalize(Entity::CertificateAuthority, &name, &authority)?;
        data.authorities.insert(name, authority.clone());
        Ok(authority)
    }

    pub(super) fn delete_authority(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let current = data.authorities.get(name).map(|a| &a.authority.etag);
        rules::check_delete(Entity::CertificateAuthority, name, current, &precondition)?;
        if let Some(user) = data
            .policies
            .values()
            .find(|p| p.certificate_authority_name == name)
        {
            return Err(StoreError::InUse {
                entity: Entity::CertificateAuthority,
                id: name.to_owned(),
                user_entity: Entity::CredentialPolicy,
                user_id: user.name.clone(),
            });
        }
        data.authorities.remove(name);
        Ok(())
    }

    pub(super) fn put_policy(
        &self,
        id_scope: &IdScope,
        mut policy: CredentialPolicy,
        precondition: Precondition,
    ) -> StoreResult<Written<CredentialPolicy>> {
        let now = time::now();
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let current = data.policies.get(&policy.name);
        let current_tag = current.map(|p| p.etag.clone().unwrap_or_else(|| ETag::new("")));
        let outcome = rules::check_put(
            Entity::CredentialPolicy,
            &policy.name,
            current_tag.as_ref(),
            &precondition,
        )?;
        if !data
            .authorities
            .contains_key(&policy.certificate_authority_name)
        {
            return Err(StoreError::MissingReference {
                entity: Entity::CredentialPolicy,
                id: policy.name.clone(),
                missing_entity: Entity::CertificateAuthority,
                missing_id: policy.certificate_authority_name.clone(),
            });
        }
        authorities::stamp_policy(&mut policy, current, now);
        let policy = rules::normalize(Entity::CredentialPolicy, &policy.name, &policy)?;
        data.policies.insert(policy.name.clone(), policy.clone());
        Ok(Written {
            record: policy,
            outcome,
        })
    }

    pub(super) fn delete_policy(
        &self,
        id_scope: &IdScope,
        name: &str,
        precondition: Precondition,
    ) -> StoreResult<()> {
        let mut state = self.write();
        let data = state.data_mut(id_scope)?;
        let current = data
            .policies
            .get(name)
            .map(|p| p.etag.clone().unwrap_or_else(|| ETag::new("")));
        rules::check_delete(
            Entity::CredentialPolicy,
            name,
            current.as_ref(),
            &precondition,
        )?;
        let named = |n: &Option<String>| n.as_deref() == Some(name);
        let user = data
            .enrollments
            .values()
            .find(|e| named(&e.credential_policy_name))
            .map(|e| (Entity::Enrollment, e.registration_id.as_str().to_owned()))
            .or_else(|| {
                data.groups
                    .values()
                    .find(|g| named(&g.credential_policy_name))
                    .map(|g| {
                        (
                            Entity::EnrollmentGroup,
                            g.enrollment_group_id.as_str().to_owned(),
                        )
                    })
            });
        if let Some((user_entity, user_id)) = user {
            return Err(StoreError::InUse {
                entity: Entity::CredentialPolicy,
                id: name.to_owned(),
                user_entity,
                user_id,
            });
        }
        data.policies.remove(name);
        Ok(())
    }
}
