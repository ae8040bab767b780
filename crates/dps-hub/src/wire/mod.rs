//! IoT Hub registry wire types, in the exact JSON shapes of the IoT Hub service
//! REST API (api-version 2021-04-12). Unknown fields are ignored on read.

mod bulk;
mod device;
mod error_body;
mod twin;

pub use bulk::{
    BulkRegistryOperationResult, DeviceRegistryOperationError, DeviceRegistryOperationWarning,
    ExportImportDevice, ImportMode, PropertyContainer, MAX_BULK_DEVICES,
};
pub use device::{
    AuthenticationMechanism, AuthenticationType, ConnectionState, Device, DeviceStatus,
    RegistryStatistics, SymmetricKeyPair, X509Thumbprint,
};
pub use error_body::{ErrorCode, HubErrorBody, ERROR_CODE_HEADER};
pub use twin::{without_metadata, Twin, TwinContent, TwinProperties, METADATA_KEY, VERSION_KEY};
