// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @title Stand-in for PollinationX's deployed PX.sol in tests
/// @notice Only the view shape pxfs reads: `pxStorage`, `canUpload` (three flags, the
/// lock after 30 days without an update), `getStorageUsageInBytes`. No BTNS key, no
/// `syncInterval`, not enumerable — as PX.sol.
contract PxLegacyMock is ERC721 {
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

    uint256 private constant LOCK_AFTER = 30 days;
    mapping(uint256 tokenId => Storage) public pxStorage;
    uint256 private _nextTokenId = 1;

    constructor() ERC721("PollinationX", "PXS") {}

    /// The free 100 MB package of PX.sol.
    function mint(uint256) external payable {
        uint256 tokenId = _nextTokenId++;
        pxStorage[tokenId] = Storage({
            name: "100MB",
            usage: 0,
            usagePercentage: 0,
            size: 100,
            sizeInBytes: 104857600,
            storageUnit: "MB",
            buyTimestamp: block.timestamp,
            lastUpdateTimestamp: block.timestamp,
            bandwidth: 25
        });
        _safeMint(msg.sender, tokenId);
    }

    /// Test hook standing in for PX.sol's owner-only `updateStorageUsage`.
    function setUsage(uint256 tokenId, uint256 usage) external {
        pxStorage[tokenId].usage = usage;
        pxStorage[tokenId].lastUpdateTimestamp = block.timestamp;
    }

    function getStorageUsageInBytes(uint256 tokenId) external view returns (uint256) {
        return pxStorage[tokenId].usage;
    }

    function canUpload(uint256 tokenId, uint256 newUsage)
        external
        view
        returns (bool canUploadStatus, bool sizeOrBandwidthExceeded, bool timestampLock)
    {
        Storage storage s = pxStorage[tokenId];
        sizeOrBandwidthExceeded = s.usage + newUsage > s.sizeInBytes || s.bandwidth == 0;
        timestampLock = block.timestamp > s.lastUpdateTimestamp + LOCK_AFTER;
        canUploadStatus = !sizeOrBandwidthExceeded && !timestampLock;
    }
}
