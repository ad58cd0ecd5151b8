import Foundation
import Logging
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenLocalBroker
import WarrenTestSupport

extension OwnBrokerSuites {
    /// A three-node RabbitMQ cluster on 127.0.0.1 (its own nodes, joined with `join_cluster`) and quorum queues.
    @Suite(
        "Three-node cluster with quorum queues (dedicated brokers)", .serialized, .tags(.broker, .cluster),
        .needs(.broker, .cluster), .deletesItsQueues)
    struct ClusterTests {
        /// Ids handled, with how many times each.
        final class Ledger: Sendable {
            private let handled = Mutex<[String: Int]>([:])
            func record(_ id: String) { handled.withLock { $0[id, default: 0] += 1 } }
            var snapshot: [String: Int] { handled.withLock { $0 } }
        }

        @Test func killingTheNodeTheWorkerIsOnLosesNothing() async throws {
            try await withCleanups { cleanups in
                let cluster = try await bootingOneAtATime {
                    try await LocalBrokerCluster.start(nodes: 3, oneNodeAtATime: true)
                }
                cleanups.add { try? await cluster.stop() }
                #expect(
                    try await cluster.runningNodes() == cluster.nodes.map(\.nodeName).sorted(), "three running members")

                var logger = Logger(label: "warren.tests.cluster")
                logger.logLevel =
                    ProcessInfo.processInfo.environment["WARREN_TEST_LOG"].flatMap(Logger.Level.init(rawValue:))
                    ?? .critical
                let queue = TestBroker.uniqueName()
                let urls = cluster.amqpURLs
                let ledger = Ledger()
                let registration = HandlerRegistration(
                    WelcomeEmail.self, queue: queue, options: HandlerOptions(prefetch: 50, maxConcurrentHandlers: 4)
                ) {
                    _, context in
                    ledger.record(context.messageID ?? "?")
                }
                let workerTransport = RabbitMQTransport(
                    endpoints: try urls.map { try AMQPEndpoint(uri: $0 + "?heartbeat=2") }, queueType: .quorum,
                    logger: logger)
                let worker = Worker(
                    transport: workerTransport, registrations: [registration],
                    configuration: WorkerConfiguration(
                        recovery: RecoveryPolicy(initialDelay: .milliseconds(200), maximumDelay: .seconds(2))),
                    logger: logger)
                let running = Task { try await worker.run() }
                defer { running.cancel() }
                #expect(try await eventually(timeout: .seconds(30)) { worker.isConsuming })
                let victim = try #require(cluster.nodes.first { $0.port == workerTransport.connection?.endpoint.port })

                // The publisher sits on another node.
                let publisherTransport = RabbitMQTransport(
                    endpoints: try urls.reversed().map { try AMQPEndpoint(uri: $0) }, queueType: .quorum, logger: logger
                )
                try await publisherTransport.start()
                let publisher = WarrenPublisher(transport: publisherTransport)
                let total = 3000
                let (confirmed, failed) = try await withThrowingTaskGroup(of: (String?, String?).self) { group in
                    for lane in 0..<8 {
                        group.addTask {
                            var confirmed: [String] = []
                            var failed: [String] = []
                            for index in stride(from: lane, to: total, by: 8) {
                                let id = "m-\(index)"
                                do {
                                    try await publisher.publish(
                                        WelcomeEmail(userId: "\(index)", email: "c@example.com"), to: .queue(queue),
                                        messageID: id)
                                    confirmed.append(id)
                                } catch {
                                    failed.append(id)
                                }
                            }
                            return (confirmed.joined(separator: ","), failed.joined(separator: ","))
                        }
                    }
                    group.addTask {
                        // Under load: kill the worker's node once a third of the messages have been handled.
                        _ = try await eventually(timeout: .seconds(60)) { ledger.snapshot.count >= total / 3 }
                        victim.kill()
                        return (nil, nil)
                    }
                    var confirmed = Set<String>()
                    var failed = Set<String>()
                    for try await (ok, bad) in group {
                        ok.map { confirmed.formUnion($0.split(separator: ",").map(String.init)) }
                        bad.map { failed.formUnion($0.split(separator: ",").map(String.init)) }
                    }
                    return (confirmed, failed)
                }
                #expect(failed.isEmpty, "\(failed.count) publishes failed")
                #expect(!victim.isListening, "the node is down")

                let everythingHandled = try await eventually(timeout: .seconds(90)) {
                    confirmed.isSubset(of: Set(ledger.snapshot.keys))
                }
                let handled = ledger.snapshot
                let lost = confirmed.subtracting(handled.keys)
                let duplicates = handled.values.reduce(0) { $0 + max(0, $1 - 1) }
                #expect(
                    everythingHandled && lost.isEmpty,
                    "published \(confirmed.count), handled \(handled.count), lost \(lost.count)")
                #expect(worker.isConsuming, "the worker consumes again: \(worker.healthProblem ?? "")")
                #expect(workerTransport.connection?.endpoint.port != victim.port, "on another node")
                print(
                    "cluster node kill: published \(confirmed.count), handled \(handled.count), lost \(lost.count), duplicates \(duplicates)"
                )

                worker.shutdown()
                try await running.value
                await publisherTransport.close()
                try await cluster.stop()
            }
        }
    }
}
