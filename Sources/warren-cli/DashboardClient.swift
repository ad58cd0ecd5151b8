import ArgumentParser
import Foundation
import Warren

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `--dashboard URL`: the dead letters a ledger took off their queues are listed, replayed and purged through its API.
struct DashboardOptions: ParsableArguments {
    @Option(
        help:
            "A warren-dashboard (e.g. http://127.0.0.1:8089) that holds the dead letters; its token in WARREN_DASHBOARD_TOKEN."
    )
    var dashboard: String?

    func client() throws -> DashboardClient? {
        guard let dashboard else { return nil }
        guard let url = URL(string: dashboard), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw fail("--dashboard is not an http(s) URL")
        }
        guard let token = ProcessInfo.processInfo.environment["WARREN_DASHBOARD_TOKEN"], !token.isEmpty else {
            throw fail("--dashboard needs the dashboard's token in WARREN_DASHBOARD_TOKEN")
        }
        if url.scheme == "http", let host = url.host, !isLoopbackHost(host) {
            FileHandle.standardError.write(
                Data(
                    "warren: warning: the dashboard token goes to \(host) over plain http, readable on the way; use an https:// URL\n"
                        .utf8))
        }
        return DashboardClient(base: url, token: token)
    }
}

/// The dashboard's API, as the CLI uses it.
struct DashboardClient {
    let base: URL
    let token: String

    /// A dead letter's row as the API gives it, printed back as JSON.
    struct Row: Encodable {
        var fields: [String: String]
        init(_ row: [String: Any]) {
            fields = row.compactMapValues { value in
                switch value {
                case let text as String: text
                case let number as NSNumber: "\(number)"
                case let object as [String: Any]:
                    (try? JSONSerialization.data(withJSONObject: object, options: .sortedKeys)).map {
                        String(decoding: $0, as: UTF8.self)
                    }
                default: nil
                }
            }
        }
        func encode(to encoder: any Encoder) throws { try fields.encode(to: encoder) }
    }

    struct Operation {
        var id: String
        var status: String
        var settled: Int
        var total: Int
        var error: String?

        init(_ json: [String: Any]) {
            id = json["id"] as? String ?? ""
            status = json["status"] as? String ?? ""
            settled = json["settled"] as? Int ?? 0
            total = json["total"] as? Int ?? 0
            error = json["error"] as? String
        }
    }

    func get(_ path: String, query: [(String, String)] = []) async throws -> [String: Any] {
        var components = URLComponents(url: url(path), resolvingAgainstBaseURL: false)!
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        return try await send(URLRequest(url: components.url!))
    }

    /// Starts an operation on `queue`'s dead letters (one message's with `messageID`) and waits for its end.
    func run(_ action: String, queue: String, messageID: String?) async throws -> Operation {
        var request = URLRequest(url: url("/api/operations"))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        var filter = ["queue": queue]
        if let messageID { filter["message_id"] = messageID }
        request.httpBody = try JSONSerialization.data(withJSONObject: ["action": action, "filter": filter])
        var operation = Operation(try await send(request))
        while operation.status == "running" {
            try await Task.sleep(for: .milliseconds(250))
            operation = Operation(try await get("/api/operations/\(Self.pathComponent(operation.id))"))
        }
        if operation.status != "done" {
            throw fail("the \(action) (operation \(operation.id)) failed: \(operation.error ?? operation.status)")
        }
        return operation
    }

    /// `path` (already percent-encoded) under the dashboard's address.
    private func url(_ path: String) -> URL {
        var text = base.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        return URL(string: text + path)!
    }

    private func send(_ request: URLRequest) async throws -> [String: Any] {
        var request = request
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw fail("could not reach the dashboard at \(base.absoluteString): \(error.localizedDescription)")
        }
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            throw fail(
                "the dashboard answered \(status): \(json["message"] as? String ?? String(decoding: data.prefix(200), as: UTF8.self))"
            )
        }
        return json
    }

    static func pathComponent(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))
            ?? text
    }

    static func time(_ milliseconds: Any?) -> String {
        guard let milliseconds = milliseconds as? Int else { return "?" }
        return ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }

    /// Held in the ledger, or replayed/purged by which operation.
    static func whereNow(_ row: [String: Any]) -> String {
        if row["held"] as? Bool == true { return "held" }
        if let settled = row["settled"] as? String { return "\(settled) by \(row["settled_by"] as? String ?? "?")" }
        return ""
    }
}
