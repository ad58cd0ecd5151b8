import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// An HTTP answer: status, headers (names in lowercase) and body.
package struct HTTPAnswer: Sendable {
    package var status: Int
    package var body: String
    package var headers: [String: String] = [:]

    package init(status: Int, body: String, headers: [String: String] = [:]) {
        self.status = status
        self.body = body
        self.headers = headers
    }

    package var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] }
    /// The `queues` of a readiness body, by name.
    package var queueStates: [String: String] {
        let queues = json?["queues"] as? [[String: Any]] ?? []
        return Dictionary(
            queues.compactMap { q in (q["queue"] as? String).map { ($0, q["state"] as? String ?? "") } },
            uniquingKeysWith: { $1 })
    }
}

/// A GET on 127.0.0.1 with a short timeout (a refused or stuck request is an answer with status 0).
package func httpGet(port: Int, _ path: String, headers: [String: String] = [:]) async -> HTTPAnswer {
    await httpRequest("GET", port: port, path, headers: headers)
}

/// A request to 127.0.0.1 with a short timeout that does not follow redirects (a refused or stuck request is an
/// answer with status 0).
package func httpRequest(
    _ method: String, port: Int, _ path: String, headers: [String: String] = [:], body: String? = nil
) async -> HTTPAnswer {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    request.httpMethod = method
    request.timeoutInterval = 5
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    request.httpBody = body.map { Data($0.utf8) }
    guard let (data, response) = try? await noRedirects.data(for: request), let http = response as? HTTPURLResponse
    else {
        return HTTPAnswer(status: 0, body: "")
    }
    let fields = Dictionary(
        http.allHeaderFields.compactMap { key, value in (key as? String).map { ($0.lowercased(), "\(value)") } },
        uniquingKeysWith: { $1 })
    return HTTPAnswer(status: http.statusCode, body: String(decoding: data, as: UTF8.self), headers: fields)
}

/// A session that hands redirects back to the caller (a test checks the 303 itself) and keeps no cookies (a test
/// sends the ones it means to).
private let noRedirects: URLSession = {
    let configuration = URLSessionConfiguration.ephemeral
    configuration.httpCookieStorage = nil
    configuration.httpShouldSetCookies = false
    configuration.httpCookieAcceptPolicy = .never
    return URLSession(configuration: configuration, delegate: NoRedirects(), delegateQueue: nil)
}()

private final class NoRedirects: NSObject, URLSessionTaskDelegate, Sendable {
    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }
}
