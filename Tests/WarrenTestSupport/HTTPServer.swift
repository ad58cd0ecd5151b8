import WarrenHTTP

/// Serves `endpoints` on a free port for the duration of `body`.
package func withHTTPServer<T>(_ endpoints: WarrenHealthEndpoints, _ body: (Int) async throws -> T) async throws -> T {
    let server = WarrenHTTPServer(endpoints: endpoints, port: 0, logger: TestBroker.quietLogger())
    let serving = Task { try await server.run() }
    defer { serving.cancel() }
    let port = try await server.waitUntilListening()
    return try await body(port)
}
