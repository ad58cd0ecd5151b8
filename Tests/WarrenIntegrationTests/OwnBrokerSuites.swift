import Testing
import WarrenTestSupport

/// The suites that start several nodes of their own run one after the other, so that a two-core machine never boots
/// a cluster and the chaos suite's node at the same time as the shared ones.
@Suite(
    "Suites with brokers of their own, one at a time", .serialized, .tags(.broker), .needs(.broker), .deletesItsQueues)
struct OwnBrokerSuites {}
