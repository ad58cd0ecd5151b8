import Foundation

/// Several ``LocalBroker`` nodes on 127.0.0.1 joined into one RabbitMQ cluster (`rabbitmqctl join_cluster`), for
/// tests of quorum queues and of a node going down.
///
/// ```swift
/// let cluster = try await LocalBrokerCluster.start(nodes: 3)
/// let endpoints = try cluster.amqpURLs.map { try AMQPEndpoint(uri: $0) }   // a client tries them in order
/// cluster.nodes[0].kill()                                                   // the node a client is on dies
/// try await cluster.stop()
/// ```
public final class LocalBrokerCluster: Sendable, CustomStringConvertible {
    /// The nodes; the first is the one the others joined.
    public let nodes: [LocalBroker]

    init(nodes: [LocalBroker]) {
        self.nodes = nodes
    }

    /// The nodes' AMQP URLs (user `guest`), in node order.
    public var amqpURLs: [String] { nodes.map(\.amqpURL) }

    public var description: String { "LocalBrokerCluster(\(nodes.map(\.description).joined(separator: ", ")))" }

    /// Starts `count` nodes with a shared Erlang cookie, then joins every node to the first.
    /// - Parameters:
    ///   - configuration: applied to every node; its node name, data directory, port and cookie are ignored.
    ///   - oneNodeAtATime: boot each node after the previous one is up rather than all at once: slower where cores are
    ///     free, but a loaded machine (a test run beside other brokers) never boots several Erlang VMs together, which
    ///     can push a boot past its timeout.
    /// - Throws: ``LocalBrokerError``; nodes already started are stopped first.
    public static func start(
        nodes count: Int = 3, configuration: LocalBrokerConfiguration = LocalBrokerConfiguration(),
        oneNodeAtATime: Bool = false
    ) async throws -> LocalBrokerCluster {
        precondition(count >= 1, "a cluster needs a node")
        var node = configuration
        node.nodeName = nil
        node.dataDirectory = nil
        node.port = nil
        node.erlangCookie = UUID().uuidString.replacingOccurrences(of: "-", with: "").uppercased()
        var started: [Result<LocalBroker, any Error>] = []
        if oneNodeAtATime {
            for _ in 0..<count {
                let result = await Result(catching: { try await LocalBroker.start(node) })
                started.append(result)
                if case .failure = result { break }
            }
        } else {
            started = await withTaskGroup(of: Result<LocalBroker, any Error>.self) { group in
                for _ in 0..<count {
                    group.addTask { [node] in await Result(catching: { try await LocalBroker.start(node) }) }
                }
                var results: [Result<LocalBroker, any Error>] = []
                for await result in group { results.append(result) }
                return results
            }
        }
        let brokers = started.compactMap { try? $0.get() }
        brokers.forEach(registerExitStop)
        do {
            for case .failure(let error) in started { throw error }
            let cluster = LocalBrokerCluster(nodes: brokers)
            for joiner in brokers.dropFirst() {
                try await joiner.rabbitmqctl(["stop_app"])
                try await joiner.rabbitmqctl(["join_cluster", brokers[0].nodeName])
                try await joiner.startApp()
            }
            return cluster
        } catch {
            for broker in brokers { try? await broker.stop() }
            throw error
        }
    }

    /// The node names RabbitMQ reports as running members of the cluster (asked of the first running node).
    public func runningNodes() async throws -> [String] {
        var lastError: (any Error)?
        for node in nodes where node.isListening {
            do {
                let output = try await node.rabbitmqctl(
                    ["cluster_status", "--formatter", "json"], timeout: .seconds(30))
                struct Status: Decodable { var running_nodes: [String] }
                let json = output.drop(while: { $0 != "{" })
                return try JSONDecoder().decode(Status.self, from: Data(json.utf8)).running_nodes.sorted()
            } catch {
                lastError = error
            }
        }
        throw lastError ?? LocalBrokerError(.commandFailed, "no node of the cluster is running")
    }

    /// Stops every node (a node killed before is only cleaned up).
    public func stop() async throws {
        for node in nodes.reversed() { try await node.stop() }
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
