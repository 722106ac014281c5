//! PollinationX's deployed `PX.sol`, as pxfs calls it: the v2 (current) and v1 (older)
//! interfaces, written from PX.sol's published ABI (docs/pollinationx.md;
//! `tests/chain_contract.rs`, which checks every selector).

#![allow(clippy::too_many_arguments)]

use alloy::sol;

sol! {
    #[sol(rpc)]
    #[derive(Debug)]
    interface IPxSolV2 {
        struct Package {
            uint256 id;
            string name;
            uint256 price;
            uint256 size;
            uint256 sizeInBytes;
            string storageUnit;
            uint256 bandwidthLimit;
            uint256 active;
        }

        event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

        function pxStorage(uint256 tokenId) external view returns (string name, uint256 usage, uint256 usagePercentage, uint256 size, uint256 sizeInBytes, string storageUnit, uint256 buyTimestamp, uint256 lastUpdateTimestamp, uint256 bandwidth);
        function canUpload(uint256 tokenId, uint256 size) external view returns (bool canUploadStatus, bool sizeOrBandwidthExceeded, bool timestampLock);
        function getStorageUsageInBytes(uint256 tokenId) external view returns (uint256);
        function getAllPackages() external view returns (Package[] memory);
        function mint(uint256 packageId) external payable;
        function pxFreePackage(address minter) external view returns (uint256);
        function updateStorageUsage(uint256 tokenId, uint256 usageInBytes, uint256 bandwidth) external;
        function unlockUploading(uint256 tokenId) external;
        function addExtraContent(uint256 tokenId, string key, string value) external;
        function getExtraContent(uint256 tokenId, string key) external view returns (string);
        function owner() external view returns (address);
    }
}

sol! {
    #[sol(rpc)]
    #[derive(Debug)]
    interface IPxSolV1 {
        function pxStorage(uint256 tokenId) external view returns (string name, uint256 usage, uint256 usagePercentage, uint256 size, uint256 sizeInBytes, string storageUnit, uint256 buyTimestamp, uint256 lastUpdateTimestamp);
        function canUpload(uint256 tokenId, uint256 size) external view returns (bool);
        function updateStorageUsage(uint256 tokenId, uint256 usageInBytes) external;
    }
}
