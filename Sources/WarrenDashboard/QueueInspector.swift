import Foundation
import Logging
import Warren
import WarrenAMQP

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// What the queues page shows of one work queue: its queues as the broker reports them now, and, when the
/// management API is reachable, its rates.
public struct QueueOverview: Sendable, Equatable, Encodable {
    public var queue: String
    /// The work queue, its delay queues, its redelivered queue and its dead-letter queue.
    public var queues: [QueueInspection]
    public var rates: QueueRates?
    /// Why the broker could not be asked, when it could not.
    public var problem: String?
    /// The process holding the queue — a partition of an ordered flow — as its exclusive consumer's tag names it
    /// (`host (pid 1234)`), from the management API; `nil` when nobody holds it, or without the management API.
    public var holder: String?

    public init(
        queue: String, queues: [QueueInspection], rates: QueueRates? = nil, problem: String? = nil,
        holder: String? = nil
    ) {
        self.queue = queue
        self.queues = queues
        self.rates = rates
        self.problem = problem
        self.holder = holder
    }

    func depth(_ role: String) -> Int? {
        let matching = queues.filter { $0.role == role && $0.exists }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + ($1.messages ?? 0) }
    }

    enum CodingKeys: String, CodingKey { case queue, queues, rates, problem, holder }

    /// `host (pid 1234)` from a partition holder's consumer tag, `warren-holder.<host>.<pid>.<random>` (the host may
    /// hold dots); `nil` for any other tag. The tag comes from whichever client consumes: it is bounded and checked,
    /// and shown escaped.
    static func holder(fromConsumerTag tag: String) -> String? {
        guard tag.utf8.count <= 255, tag.hasPrefix("warren-holder.") else { return nil }
        let parts = tag.dropFirst("warren-holder.".count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3, let pid = Int32(parts[parts.count - 2]), pid > 0 else { return nil }
        let host = parts.dropLast(2).joined(separator: ".")
        guard !host.isEmpty else { return nil }
        return "\(host) (pid \(pid))"
    }
}

/// A work queue's rates over the management API's last sample, per second.
public struct QueueRates: Sendable, Equatable, Codable {
    public var publishedPerSecond: Double
    public var deliveredPerSecond: Double
    public var ackedPerSecond: Double
    /// Delivered and not yet acked (AMQP's passive declare cannot see these).
    public var unacked: Int

    public init(publishedPerSecond: Double, deliveredPerSecond: Double, ackedPerSecond: Double, unacked: Int) {
        self.publishedPerSecond = publishedPerSecond
        self.deliveredPerSecond = deliveredPerSecond
        self.ackedPerSecond = ackedPerSecond
        self.unacked = unacked
    }

    enum CodingKeys: String, CodingKey {
        case unacked
        case publishedPerSecond = "published_per_second"
        case deliveredPerSecond = "delivered_per_second"
        case ackedPerSecond = "acked_per_second"
    }
}

/// Reports work queues to the queues page.
public protocol QueueInspector: Sendable {
    /// One overview per name, in the order given; a queue the broker cannot be asked about carries a ``QueueOverview/problem``.
    func inspect(_ queues: [String]) async -> [QueueOverview]
}

/// Asks the broker over AMQP (passive declares, one connection kept open between pages) and, when given the
/// management API's address, the management API for rates. The management API's user and password are the AMQP
/// endpoint's; neither is ever logged or shown.
public actor AMQPQueueInspector: QueueInspector {
    private let endpoints: [AMQPEndpoint]
    private let managementURL: URL?
    private let connection: ReusedConnection

    /// - Parameters:
    ///   - managementURL: e.g. `http://127.0.0.1:15672`; `nil` to use AMQP alone (no rates, no unacked counts).
    public init(
        endpoints: [AMQPEndpoint], managementURL: URL? = nil, logger: Logger = Logger(label: "warren.dashboard.queues")
    ) {
        self.endpoints = endpoints
        self.managementURL = managementURL
        self.connection = ReusedConnection(endpoints: endpoints, name: "warren-dashboard queues", logger: logger)
    }

    public func inspect(_ queues: [String]) async -> [QueueOverview] {
        var overviews: [QueueOverview] = []
        for name in queues {
            do {
                var overview = QueueOverview(
                    queue: name, queues: try await WarrenTopology(queue: name).inspect(on: try await connection.open()))
                (overview.rates, overview.holder) = await managementFigures(of: name)
                overviews.append(overview)
            } catch {
                overviews.append(
                    QueueOverview(queue: name, queues: [], problem: "the broker could not be asked: \(error)"))
            }
        }
        return overviews
    }

    public func close() async {
        await connection.close()
    }

    /// The queue's rates and unacked count, and the holder its exclusive consumer's tag names.
    private func managementFigures(of queue: String) async -> (QueueRates?, holder: String?) {
        guard let managementURL, let endpoint = endpoints.first else { return (nil, nil) }
        let base =
            managementURL.absoluteString.hasSuffix("/")
            ? String(managementURL.absoluteString.dropLast()) : managementURL.absoluteString
        guard let url = URL(string: "\(base)/api/queues/\(Link.encode(endpoint.virtualHost))/\(Link.encode(queue))")
        else { return (nil, nil) }
        var request = URLRequest(url: url)
        request.timeoutInterval = 5
        let credentials = Data("\(endpoint.username):\(endpoint.password)".utf8).base64EncodedString()
        request.setValue("Basic \(credentials)", forHTTPHeaderField: "Authorization")
        guard let (data, response) = try? await URLSession.shared.data(for: request),
            (response as? HTTPURLResponse)?.statusCode == 200,
            let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        else { return (nil, nil) }
        let stats = json["message_stats"] as? [String: Any] ?? [:]
        func rate(_ name: String) -> Double {
            ((stats["\(name)_details"] as? [String: Any])?["rate"] as? NSNumber)?.doubleValue ?? 0
        }
        let rates = QueueRates(
            publishedPerSecond: rate("publish"), deliveredPerSecond: rate("deliver_get"), ackedPerSecond: rate("ack"),
            unacked: (json["messages_unacknowledged"] as? NSNumber)?.intValue ?? 0)
        return (rates, (json["exclusive_consumer_tag"] as? String).flatMap(QueueOverview.holder(fromConsumerTag:)))
    }
}
