// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {PxSolCommon} from "./PxSolCommon.sol";

/// @title Test double of PollinationX's older PX.sol ("v1")
/// @notice As v2 except: `canUpload` returns one bool, `pxStorage` has no `bandwidth`, and
/// `updateStorageUsage(uint256,uint256)` (which adds to the usage and resets the lock) is
/// for the contract owner only.
contract PxSolV1Double is PxSolCommon {
    struct Storage {
        string name;
        uint256 usage;
        uint256 usagePercentage;
        uint256 size;
        uint256 sizeInBytes;
        string storageUnit;
        uint256 buyTimestamp;
        uint256 lastUpdateTimestamp;
    }

    uint256 public constant LOCK_AFTER = 30 days;
    mapping(uint256 => Storage) public pxStorage;

    function canUpload(uint256 tokenId, uint256 size) external view returns (bool) {
        Storage storage s = pxStorage[tokenId];
        return s.usage + size <= s.sizeInBytes && block.timestamp - s.lastUpdateTimestamp <= LOCK_AFTER;
    }

    function getStorageUsageInBytes(uint256 tokenId) external view returns (uint256) {
        return pxStorage[tokenId].usage;
    }

    function updateStorageUsage(uint256 tokenId, uint256 usageInBytes) external onlyOwner {
        ownerOf(tokenId);
        Storage storage s = pxStorage[tokenId];
        s.usage += usageInBytes;
        s.usagePercentage = (s.usage * 100) / s.sizeInBytes;
        s.lastUpdateTimestamp = block.timestamp;
        _setTokenURI(tokenId, _metadata(tokenId));
    }

    function unlockUploading(uint256 tokenId) external onlyOwner {
        ownerOf(tokenId);
        pxStorage[tokenId].lastUpdateTimestamp = block.timestamp;
    }

    function _initStorage(uint256 tokenId, Package memory p) internal override {
        pxStorage[tokenId] =
            Storage(p.name, 0, 0, p.size, p.sizeInBytes, p.storageUnit, block.timestamp, block.timestamp);
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
            "}"
        );
    }
}
