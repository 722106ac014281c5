// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {PxSolBase} from "./PxSolBase.sol";

/// @title What PX.sol v2 and v1 share: packages, `mint(uint256)`, `pxFreePackage`,
/// extra content, bandwidth packages, pause, withdraw
/// @notice Written from the published facts about PollinationX's PX.sol (see
/// POLLINATIONX.md), not copied from it. Package 0 is the free 100 MB package with 25
/// uploads of bandwidth, once per address; the contract owner mints any package free.
abstract contract PxSolCommon is PxSolBase {
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

    struct BandwidthPackage {
        uint256 id;
        uint256 price;
        uint256 bandwidth;
        uint256 active;
    }

    /// 1 once the address minted the free package.
    mapping(address => uint256) public pxFreePackage;
    uint256 public paused;

    Package[] internal _packages;
    BandwidthPackage[] internal _bandwidthPackages;
    mapping(uint256 => mapping(string => string)) internal _extraContent;
    uint256 internal _nextTokenId = 1;

    constructor() PxSolBase("PollinationX Storage", "PXS") {
        _packages.push(Package(0, "100MB", 0, 100, 100 * 1024 * 1024, "MB", 25, 1));
        _packages.push(Package(1, "1GB", 0.01 ether, 1, 1024 * 1024 * 1024, "GB", 250, 1));
        _bandwidthPackages.push(BandwidthPackage(0, 0.001 ether, 100, 1));
    }

    modifier whenNotPaused() {
        require(paused == 0, "PX: contract is paused");
        _;
    }

    modifier onlyTokenOwnerOrApproved(uint256 tokenId) {
        require(
            _isApprovedOrOwner(msg.sender, tokenId) || msg.sender == owner(),
            "PX: caller is not token owner or approved"
        );
        _;
    }

    /// PX.sol's `ISubscriptionOwner`.
    function getSubscriptionOwner() external view returns (address) {
        return owner();
    }

    function getAllPackages() external view returns (Package[] memory) {
        return _packages;
    }

    function getAllBandwidthPackages() external view returns (BandwidthPackage[] memory) {
        return _bandwidthPackages;
    }

    function mint(uint256 packageId) external payable whenNotPaused {
        Package memory p = _package(packageId);
        if (msg.sender != owner()) {
            if (p.price == 0) {
                require(pxFreePackage[msg.sender] == 0, "PX: free package already minted");
                pxFreePackage[msg.sender] = 1;
            } else {
                require(msg.value >= p.price, "PX: insufficient payment");
            }
        }
        uint256 tokenId = _nextTokenId++;
        _safeMint(msg.sender, tokenId);
        _initStorage(tokenId, p);
        _setTokenURI(tokenId, _metadata(tokenId));
    }

    function addNewPackage(uint256 priceWei, uint256 sizeInGb, uint256 bandwidthLimit) external onlyOwner {
        uint256 id = _packages.length;
        _packages.push(
            Package(id, string.concat(_decimal(sizeInGb), "GB"), priceWei, sizeInGb, sizeInGb * 1024 ** 3, "GB", bandwidthLimit, 1)
        );
    }

    function activateDeactivatePackage(uint256 packageId, uint256 active) external onlyOwner {
        _package(packageId);
        _packages[packageId].active = active;
    }

    function updatePackagePrice(uint256 packageId, uint256 priceWei) external onlyOwner {
        _package(packageId);
        _packages[packageId].price = priceWei;
    }

    function addNewBandwidthPackage(uint256 priceWei, uint256 bandwidth) external onlyOwner {
        _bandwidthPackages.push(BandwidthPackage(_bandwidthPackages.length, priceWei, bandwidth, 1));
    }

    function addExtraContent(uint256 tokenId, string calldata key, string calldata value)
        external
        onlyTokenOwnerOrApproved(tokenId)
    {
        _extraContent[tokenId][key] = value;
    }

    function getExtraContent(uint256 tokenId, string calldata key) external view returns (string memory) {
        return _extraContent[tokenId][key];
    }

    function pause(uint256 state) external onlyOwner {
        paused = state;
    }

    function withdraw() external onlyOwner {
        (bool ok,) = payable(owner()).call{value: address(this).balance}("");
        require(ok, "PX: withdraw failed");
    }

    function _package(uint256 packageId) internal view returns (Package memory p) {
        require(packageId < _packages.length, "PX: package does not exist");
        p = _packages[packageId];
        require(p.active == 1, "PX: package is not active");
    }

    function _initStorage(uint256 tokenId, Package memory p) internal virtual;

    function _metadata(uint256 tokenId) internal view virtual returns (string memory);
}
