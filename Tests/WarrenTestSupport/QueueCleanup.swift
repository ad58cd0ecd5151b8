import Foundation
import Synchronization
import Testing
import Warren
import WarrenAMQP

/// The names a suite made with ``TestBroker/uniqueName(_:)`` while it ran (a task-local: each suite its own).
final class NamesMade: Sendable {
    @TaskLocal static var current: NamesMade?
    private let names = Mutex<[String]>([])

    func record(_ name: String) { names.withLock { $0.append(name) } }
    var all: [String] { names.withLock { $0 } }
}

/// Deletes from the shared test broker, when the suite ends however it ends, every queue and exchange it named with
/// ``TestBroker/uniqueName(_:)`` — for a work queue, with its whole Warren topology (delay queues from its manifest,
/// redelivered, dead letters, manifest) — so that nothing piles up on a broker that `WARREN_TEST_AMQP_URL` names.
/// (Nodes of a suite's own are thrown away with their data.) `WARREN_TEST_KEEP_QUEUES=1` keeps them, to look at what a
/// failing test left.
package struct DeletesItsQueuesTrait: SuiteTrait, TestScoping {
    package var isRecursive: Bool { false }

    package func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let names = NamesMade()
        do {
            try await NamesMade.$current.withValue(names) { try await function() }
        } catch {
            await Self.delete(names.all)
            throw error
        }
        await Self.delete(names.all)
    }

    private static func delete(_ names: [String]) async {
        guard !names.isEmpty, ProcessInfo.processInfo.environment["WARREN_TEST_KEEP_QUEUES"] != "1",
            let url = TestBroker.urlIfUsed,
            let connection = try? await AMQPConnection.connect(
                to: AMQPEndpoint(uri: url), connectionName: "test cleanup", logger: TestBroker.logger)
        else { return }
        var channel = try? await connection.openChannel()
        func attempt(_ operation: (AMQPChannel) async throws -> Void) async {
            if channel?.isOpen != true { channel = try? await connection.openChannel() }
            guard let open = channel else { return }
            do { try await operation(open) } catch { channel = nil }
        }
        for name in names {
            let topology = WarrenTopology(queue: name)
            let existing = ((try? await topology.inspect(on: connection)) ?? []).filter(\.exists).map(\.name)
            for queue in existing + [topology.manifestQueue] { await attempt { _ = try await $0.queueDelete(queue) } }
            await attempt { try await $0.exchangeDelete(name) }
        }
        await connection.close()
    }
}

extension Trait where Self == DeletesItsQueuesTrait {
    /// Deletes what the suite named with ``TestBroker/uniqueName(_:)`` from the shared broker when it ends.
    package static var deletesItsQueues: Self { Self() }
}
