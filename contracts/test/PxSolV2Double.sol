// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {PxSolCommon} from "./PxSolCommon.sol";

/// @title Test double of PollinationX's PX.sol ("v2", the current deployment)
/// @notice Same ABI, selectors and return tuples as PX.sol; OpenZeppelin 4.x revert
/// strings; `MetadataUpdate` on mint, usage update, upgrade and bandwidth purchase.
/// `updateStorageUsage` adds to the usage (it never goes down), spends `bandwidth` uploads
/// and resets the 30-day upload lock. Usage is whatever the caller reports.
contract PxSolV2Double is PxSolCommon {
    struct Storage {
        string name;
        uint256 usage;
        uint256 usagePercentage;
        uint256 size;
        uint256 sizeInBytes;
        string storageUnit;
        uint256 buyTimestamp;
        uint256 lastUpdateTimestamp;
        uint256 bandwidth;
    }

    uint256 public constant LOCK_AFTER = 30 days;
    mapping(uint256 => Storage) public pxStorage;

    function canUpload(uint256 tokenId, uint256 size)
        external
        view
        returns (bool canUploadStatus, bool sizeOrBandwidthExceeded, bool timestampLock)
    {
        Storage storage s = pxStorage[tokenId];
        sizeOrBandwidthExceeded = s.usage + size > s.sizeInBytes || s.bandwidth == 0;
        timestampLock = block.timestamp - s.lastUpdateTimestamp > LOCK_AFTER;
        canUploadStatus = !sizeOrBandwidthExceeded && !timestampLock;
    }

    function getStorageUsageInBytes(uint256 tokenId) external view returns (uint256) {
        return pxStorage[tokenId].usage;
    }

    function updateStorageUsage(uint256 tokenId, uint256 usageInBytes, uint256 bandwidth)
        external
        onlyTokenOwnerOrApproved(tokenId)
    {
        Storage storage s = pxStorage[tokenId];
        require(s.bandwidth >= bandwidth, "PX: not enough bandwidth");
        s.usage += usageInBytes;
        s.usagePercentage = (s.usage * 100) / s.sizeInBytes;
        s.bandwidth -= bandwidth;
        s.lastUpdateTimestamp = block.timestamp;
        _setTokenURI(tokenId, _metadata(tokenId));
    }

    function unlockUploading(uint256 tokenId) external onlyOwner {
        ownerOf(tokenId);
        pxStorage[tokenId].lastUpdateTimestamp = block.timestamp;
    }

    function upgradeTokenPackage(uint256 tokenId, uint256 packageId) external payable whenNotPaused {
        require(_isApprovedOrOwner(msg.sender, tokenId), "PX: caller is not token owner or approved");
        Package memory p = _package(packageId);
        Storage storage s = pxStorage[tokenId];
        require(p.sizeInBytes > s.sizeInBytes, "PX: package is not bigger");
        require(msg.sender == owner() || msg.value >= p.price, "PX: insufficient payment");
        s.name = p.name;
        s.size = p.size;
        s.sizeInBytes = p.sizeInBytes;
        s.storageUnit = p.storageUnit;
        s.usagePercentage = (s.usage * 100) / p.sizeInBytes;
        s.bandwidth += p.bandwidthLimit;
        _setTokenURI(tokenId, _metadata(tokenId));
    }

    function buyMoreBandwidth(uint256 tokenId, uint256 bandwidthPackageId) external payable whenNotPaused {
        require(_isApprovedOrOwner(msg.sender, tokenId), "PX: caller is not token owner or approved");
        require(bandwidthPackageId < _bandwidthPackages.length, "PX: package does not exist");
        BandwidthPackage memory b = _bandwidthPackages[bandwidthPackageId];
        require(b.active == 1, "PX: package is not active");
        require(msg.sender == owner() || msg.value >= b.price, "PX: insufficient payment");
        pxStorage[tokenId].bandwidth += b.bandwidth;
        _setTokenURI(tokenId, _metadata(tokenId));
    }

    function _initStorage(uint256 tokenId, Package memory p) internal override {
        pxStorage[tokenId] = Storage(
            p.name, 0, 0, p.size, p.sizeInBytes, p.storageUnit, block.timestamp, block.timestamp, p.bandwidthLimit
        );
    }

    function _metadata(uint256 tokenId) internal view override returns (string memory) {
        Storage storage s = pxStorage[tokenId];
        return string.concat(
            "data:application/json,{\"name\":\"",
            s.name,
            "\",\"usage\":",
            _decimal(s.usage),
            ",\"size\":",
            _decimal(s.sizeInBytes),
            ",\"bandwidth\":",
            _decimal(s.bandwidth),
            "}"
        );
    }
}
