// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721Enumerable} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721Enumerable.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC4906} from "@openzeppelin/contracts/interfaces/IERC4906.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {ChainlinkClient} from "@chainlink/contracts/src/v0.8/ChainlinkClient.sol";
import {Chainlink} from "@chainlink/contracts/src/v0.8/Chainlink.sol";
import {LinkTokenInterface} from "@chainlink/contracts/src/v0.8/shared/interfaces/LinkTokenInterface.sol";

/// @title PX Storage NFT (sNFT) for pxfs
/// @notice One token = one storage quota on BTFS/IPFS. Keeps the view names of
/// PollinationX's PX.sol (`pxStorage`, `canUpload`, `getStorageUsageInBytes`,
/// `getAllPackages`) so one reader serves both, and adds the BTNS key and a Chainlink
/// sync that brings the usage measured off-chain back on-chain.
contract PxStorageNFT is ERC721Enumerable, Ownable, IERC4906, ChainlinkClient {
    using Chainlink for Chainlink.Request;

    /// Same field order as PX.sol's `StoragePackage`.
    struct StoragePackage {
        uint256 id;
        string name;
        uint256 price;
        uint256 size;
        uint256 sizeInBytes;
        string storageUnit;
        uint256 bandwidthLimit;
        uint256 active;
    }

    /// Same field order as PX.sol's `Storage`, so the public getter `pxStorage(tokenId)`
    /// returns the same tuple.
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

    mapping(uint256 tokenId => Storage) public pxStorage;
    mapping(uint256 tokenId => string) public btnsKey;
    mapping(uint256 packageId => StoragePackage) public pxStoragePackage;
    /// 1 once an address has minted the free package (PX.sol's `pxFreePackage`).
    mapping(address minter => uint256) public freePackageMinted;
    uint256[] public packageIds;

    /// Seconds after the last sync (or mint) after which uploads are locked.
    uint256 public syncInterval;
    /// Chainlink direct-request job the Operator's node runs, and the LINK fee per sync.
    bytes32 public syncJobId;
    uint256 public syncFee;
    /// Pending Chainlink requests: requestId → tokenId.
    mapping(bytes32 requestId => uint256) public syncRequests;

    uint256 private _nextTokenId = 1;

    event PackageAdded(uint256 indexed packageId, uint256 price, uint256 sizeInBytes, string name);
    event PackageActiveSet(uint256 indexed packageId, bool active);
    event BtnsKeyRegistered(uint256 indexed tokenId, string btnsKey);
    event SyncRequested(uint256 indexed tokenId, bytes32 indexed requestId);
    event Synced(uint256 indexed tokenId, uint256 usage, string root);
    event SyncIntervalSet(uint256 syncInterval);
    event SyncJobSet(bytes32 jobId, uint256 fee);

    error UnknownPackage(uint256 packageId);
    error PackageInactive(uint256 packageId);
    error WrongPayment(uint256 expected, uint256 sent);
    error FreePackageAlreadyMinted(address minter);
    error NotOwnerOrApproved(uint256 tokenId, address caller);
    error BtnsKeyAlreadyRegistered(uint256 tokenId);
    error EmptyBtnsKey();
    error NoBtnsKey(uint256 tokenId);
    error InsufficientLink(uint256 balance, uint256 fee);
    error WithdrawFailed();

    constructor(
        address link,
        address operator,
        bytes32 jobId,
        uint256 fee,
        uint256 syncInterval_,
        uint256 freeQuotaBytes
    ) ERC721("PX Storage NFT", "PXS") Ownable(msg.sender) {
        _setChainlinkToken(link);
        _setChainlinkOracle(operator);
        syncJobId = jobId;
        syncFee = fee;
        syncInterval = syncInterval_;
        _addPackage(0, 0, freeQuotaBytes, "free", 0);
    }

    // ---- packages (owner) ----

    function addNewPackage(uint256 price, uint256 sizeInBytes, string calldata name, uint256 bandwidthLimit)
        external
        onlyOwner
        returns (uint256 packageId)
    {
        packageId = packageIds.length;
        _addPackage(packageId, price, sizeInBytes, name, bandwidthLimit);
    }

    function setPackageActive(uint256 packageId, bool active) external onlyOwner {
        if (packageId >= packageIds.length) revert UnknownPackage(packageId);
        pxStoragePackage[packageId].active = active ? 1 : 0;
        emit PackageActiveSet(packageId, active);
    }

    function getAllPackages() external view returns (StoragePackage[] memory all) {
        all = new StoragePackage[](packageIds.length);
        for (uint256 i = 0; i < packageIds.length; i++) {
            all[i] = pxStoragePackage[packageIds[i]];
        }
    }

    // ---- minting and the BTNS key ----

    /// Mints a token of `packageId` to the caller. Package 0 is free and once per address;
    /// priced packages take exactly their price. Minting counts as a sync.
    function mint(uint256 packageId, string calldata key) external payable returns (uint256 tokenId) {
        if (packageId >= packageIds.length) revert UnknownPackage(packageId);
        StoragePackage storage p = pxStoragePackage[packageId];
        if (p.active != 1) revert PackageInactive(packageId);
        if (msg.value != p.price) revert WrongPayment(p.price, msg.value);
        if (packageId == 0) {
            if (freePackageMinted[msg.sender] == 1) revert FreePackageAlreadyMinted(msg.sender);
            freePackageMinted[msg.sender] = 1;
        }

        tokenId = _nextTokenId++;
        Storage storage s = pxStorage[tokenId];
        s.name = p.name;
        s.size = p.size;
        s.sizeInBytes = p.sizeInBytes;
        s.storageUnit = p.storageUnit;
        s.bandwidth = p.bandwidthLimit;
        s.buyTimestamp = block.timestamp;
        s.lastUpdateTimestamp = block.timestamp;
        if (bytes(key).length != 0) {
            btnsKey[tokenId] = key;
            emit BtnsKeyRegistered(tokenId, key);
        }
        _safeMint(msg.sender, tokenId);
    }

    /// For tokens minted without a key (e.g. from an explorer). Set once: the usage
    /// document lives under this name, so changing it would orphan the stored history.
    function registerBtnsKey(uint256 tokenId, string calldata key) external {
        _requireOwnerOrApproved(tokenId);
        if (bytes(btnsKey[tokenId]).length != 0) revert BtnsKeyAlreadyRegistered(tokenId);
        if (bytes(key).length == 0) revert EmptyBtnsKey();
        btnsKey[tokenId] = key;
        emit BtnsKeyRegistered(tokenId, key);
        emit MetadataUpdate(tokenId);
    }

    // ---- quota and sync state (PX.sol views) ----

    function getStorageUsageInBytes(uint256 tokenId) external view returns (uint256) {
        return pxStorage[tokenId].usage;
    }

    /// PX.sol's upload gate: `newUsage` more bytes fit, and the last sync is recent enough.
    function canUpload(uint256 tokenId, uint256 newUsage)
        external
        view
        returns (bool canUploadStatus, bool sizeOrBandwidthExceeded, bool timestampLock)
    {
        _requireOwned(tokenId);
        Storage storage s = pxStorage[tokenId];
        sizeOrBandwidthExceeded = s.usage + newUsage > s.sizeInBytes;
        timestampLock = _overdue(s);
        canUploadStatus = !sizeOrBandwidthExceeded && !timestampLock;
    }

    // ---- Chainlink sync ----

    /// The LINK token that pays for syncs, and the Operator requests go to.
    function linkToken() external view returns (address) {
        return _chainlinkTokenAddress();
    }

    function operator() external view returns (address) {
        return _chainlinkOracleAddress();
    }

    /// Asks the oracle to measure the token's usage under its BTNS key. Pays `syncFee`
    /// LINK from the contract's own balance.
    function sync(uint256 tokenId) external returns (bytes32 requestId) {
        _requireOwnerOrApproved(tokenId);
        string memory key = btnsKey[tokenId];
        if (bytes(key).length == 0) revert NoBtnsKey(tokenId);
        uint256 balance = LinkTokenInterface(_chainlinkTokenAddress()).balanceOf(address(this));
        if (balance < syncFee) revert InsufficientLink(balance, syncFee);

        Chainlink.Request memory req = _buildOperatorRequest(syncJobId, this.fulfillSync.selector);
        req._add("btnsKey", key);
        req._addUint("tokenId", tokenId);
        requestId = _sendOperatorRequest(req, syncFee);
        syncRequests[requestId] = tokenId;
        emit SyncRequested(tokenId, requestId);
    }

    /// Called by the Operator (`fulfillOracleRequest2` with `abi.encode(requestId, usage, root)`).
    function fulfillSync(bytes32 requestId, uint256 usage, string calldata root)
        external
        recordChainlinkFulfillment(requestId)
    {
        uint256 tokenId = syncRequests[requestId];
        delete syncRequests[requestId];
        Storage storage s = pxStorage[tokenId];
        s.usage = usage;
        s.usagePercentage = s.sizeInBytes == 0 ? 0 : (usage * 100) / s.sizeInBytes;
        s.lastUpdateTimestamp = block.timestamp;
        emit Synced(tokenId, usage, root);
        emit MetadataUpdate(tokenId);
    }

    // ---- owner settings ----

    function setSyncInterval(uint256 syncInterval_) external onlyOwner {
        syncInterval = syncInterval_;
        emit SyncIntervalSet(syncInterval_);
    }

    function setSyncJob(bytes32 jobId, uint256 fee) external onlyOwner {
        syncJobId = jobId;
        syncFee = fee;
        emit SyncJobSet(jobId, fee);
    }

    function withdraw() external onlyOwner {
        (bool ok,) = payable(msg.sender).call{value: address(this).balance}("");
        if (!ok) revert WithdrawFailed();
    }

    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC721Enumerable, IERC165)
        returns (bool)
    {
        return interfaceId == bytes4(0x49064906) || super.supportsInterface(interfaceId);
    }

    // ---- internals ----

    function _addPackage(
        uint256 packageId,
        uint256 price,
        uint256 sizeInBytes,
        string memory name,
        uint256 bandwidthLimit
    ) private {
        (uint256 size, string memory unit) = _displaySize(sizeInBytes);
        pxStoragePackage[packageId] = StoragePackage({
            id: packageId,
            name: name,
            price: price,
            size: size,
            sizeInBytes: sizeInBytes,
            storageUnit: unit,
            bandwidthLimit: bandwidthLimit,
            active: 1
        });
        packageIds.push(packageId);
        emit PackageAdded(packageId, price, sizeInBytes, name);
    }

    /// PX.sol shows sizes as a number and a unit ("100" "MB"); keep that for explorers.
    function _displaySize(uint256 sizeInBytes) private pure returns (uint256, string memory) {
        if (sizeInBytes >= 1 << 30) return (sizeInBytes >> 30, "GB");
        if (sizeInBytes >= 1 << 20) return (sizeInBytes >> 20, "MB");
        return (sizeInBytes, "B");
    }

    function _overdue(Storage storage s) private view returns (bool) {
        return block.timestamp > s.lastUpdateTimestamp + syncInterval;
    }

    function _requireOwnerOrApproved(uint256 tokenId) private view {
        address owner = _requireOwned(tokenId);
        if (!_isAuthorized(owner, msg.sender, tokenId)) revert NotOwnerOrApproved(tokenId, msg.sender);
    }
}
