// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "SlotStore",
    products: [
        .library(name: "SlotStore", targets: ["SlotStore"]),
        .executable(name: "slotstore", targets: ["slotstore"]),
        .executable(name: "slotstore-bench", targets: ["slotstore-bench"]),
    ],
    targets: [
        // Thread-local storage and membarrier, which Swift can't reach.
        .target(name: "CSlotStore"),
        .target(name: "SlotStore", dependencies: ["CSlotStore"]),
        .executableTarget(
            name: "slotstore",
            dependencies: ["SlotStore", "CSlotStore"],
            path: "Tools/slotstore"
        ),
        .executableTarget(
            name: "slotstore-bench",
            dependencies: ["SlotStore"],
            path: "Tools/slotstore-bench"
        ),
        .testTarget(
            name: "SlotStoreTests",
            // The tests drive the real `slotstore` binary as worker processes,
            // so it must be built before they run.
            dependencies: ["SlotStore", "slotstore"],
            // Read by path (#filePath) and copied before use: opening a store writes to it.
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
