import Foundation
import Logging
import Synchronization
import Testing
import WarrenAMQP
import WarrenLocalBroker

/// What the test targets share: the broker they use, a quiet logger, waiting for a condition, the failure type.

/// The broker the integration tests use: `WARREN_TEST_AMQP_URL` when set, otherwise one throwaway node started for
/// the whole run. A missing RabbitMQ is a test failure, never a skip.
package enum TestBroker {
    private static let sharedURL = Mutex<String?>(nil)

    package static func url() async throws -> String {
        try TestService.require(.broker)
        if let url = ProcessInfo.processInfo.environment["WARREN_TEST_AMQP_URL"], !url.isEmpty { return url }
        // Once the shared node runs, its URL without waiting behind another suite's boot.
        if let url = sharedURL.withLock({ $0 }) { return url }
        let url = try await bootingOneAtATime { try await LocalBroker.shared() }.amqpURL
        sharedURL.withLock { $0 = url }
        return url
    }

    package static func endpoint(query: String = "") async throws -> AMQPEndpoint {
        let url = try await url()
        return try AMQPEndpoint(uri: query.isEmpty ? url : url + (url.contains("?") ? "&" : "?") + query)
    }

    package static func connect(query: String = "", name: String = #function) async throws -> AMQPConnection {
        try await AMQPConnection.connect(to: endpoint(query: query), connectionName: "test \(name)", logger: logger)
    }

    /// Connection logs at warning and above only, to keep test output readable.
    package static let logger = quietLogger("warren.amqp.tests", level: .warning)

    /// A logger for the code under test that writes only at `level` and above (by default nothing but critical
    /// errors: the tests check outcomes, not log lines).
    package static func quietLogger(_ label: String = "warren.tests", level: Logger.Level = .critical) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }

    /// The shared broker's URL when this process used it (`WARREN_TEST_AMQP_URL`, or the node it started); `nil`
    /// when no test asked for it.
    package static var urlIfUsed: String? {
        if let url = ProcessInfo.processInfo.environment["WARREN_TEST_AMQP_URL"], !url.isEmpty { return url }
        return sharedURL.withLock { $0 }
    }

    /// A queue or exchange name no other test uses. Within a suite marked `.deletesItsQueues`, what has that name on
    /// the shared broker is deleted when the suite ends.
    package static func uniqueName(_ prefix: String = #function) -> String {
        let clean = prefix.prefix(while: { $0 != "(" })
        let name = "test.\(clean).\(UUID().uuidString.prefix(8))"
        NamesMade.current?.record(name)
        return name
    }
}

/// Runs `body` with an open connection, and closes it afterwards whatever happens.
package func withConnection<T>(
    query: String = "", name: String = #function, _ body: (AMQPConnection) async throws -> T
) async throws -> T {
    try await withCleanups { cleanups in
        let connection = try await TestBroker.connect(query: query, name: name)
        cleanups.add { await connection.close() }
        return try await body(connection)
    }
}

/// Takes the next delivery, failing the test if none arrives within `timeout`.
package func nextDelivery(_ consumer: AMQPConsumer, timeout: Duration = .seconds(10)) async throws -> AMQPDelivery {
    try await withThrowingTaskGroup(of: AMQPDelivery?.self) { group in
        group.addTask {
            var iterator = consumer.makeAsyncIterator()
            return try await iterator.next()
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let delivery = first else {
            throw TestFailure("no delivery within \(timeout)")
        }
        return delivery
    }
}

/// Polls `condition` until it holds or `timeout` passes (for conditions nothing announces, such as a queue's depth
/// on the broker).
package func eventually(
    timeout: Duration = .seconds(15), pollEvery interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async throws -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: interval)
    }
    return try await condition()
}

package struct TestFailure: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

extension String {
    package var bytes: [UInt8] { Array(utf8) }
}

/// What a test must undo however it ends (close a connection, stop a worker or a cluster), run in reverse order and
/// awaited before the test returns — unlike `defer { Task { … } }`, which a failing test outlives.
package final class Cleanups: Sendable {
    private let actions = Mutex<[@Sendable () async -> Void]>([])

    /// Adds `action`, to run before the ones added earlier.
    package func add(_ action: @escaping @Sendable () async -> Void) {
        actions.withLock { $0.append(action) }
    }

    fileprivate func run() async {
        let due = actions.withLock { actions in
            defer { actions.removeAll() }
            return actions
        }
        for action in due.reversed() { await action() }
    }
}

/// Runs `body`, then every cleanup it added, whether it returned or threw.
package func withCleanups<T>(_ body: (Cleanups) async throws -> T) async throws -> T {
    let cleanups = Cleanups()
    do {
        let result = try await body(cleanups)
        await cleanups.run()
        return result
    } catch {
        await cleanups.run()
        throw error
    }
}

/// RabbitMQ nodes boot one at a time in the test process: each boot is an Erlang VM that keeps a core busy for
/// seconds, and on a two-core machine several at once starve every test running beside them.
private actor BootGate {
    static let shared = BootGate()
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func leave() {
        if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
    }
}

/// Runs `boot` (a `LocalBroker` start, a cluster's, the local-broker tool's) when no other boot of the test process
/// runs. A node already running is returned at once by `LocalBroker.shared`, after the gate.
package func bootingOneAtATime<T>(_ boot: () async throws -> T) async throws -> T {
    await BootGate.shared.enter()
    do {
        let result = try await boot()
        await BootGate.shared.leave()
        return result
    } catch {
        await BootGate.shared.leave()
        throw error
    }
}

/// Publishes each message to `queue` (through the default exchange) on a connection of its own, `mandatory` and
/// confirmed by the broker, then closes the connection: what a foreign publisher does.
/// - Throws: the client's error (unroutable when no queue has that name yet, nacked, connection refused).
package func publishConfirmed(_ messages: [(body: [UInt8], properties: AMQPProperties)], to queue: String, url: String)
    async throws
{
    let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: url), logger: TestBroker.logger)
    do {
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        for message in messages {
            try await channel.publish(message.body, routingKey: queue, mandatory: true, properties: message.properties)
        }
        await connection.close()
    } catch {
        await connection.close()
        throw error
    }
}
