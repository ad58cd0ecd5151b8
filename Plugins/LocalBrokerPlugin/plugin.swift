import PackagePlugin
@main struct LocalBrokerPlugin: CommandPlugin { func performCommand(context: PluginContext, arguments: [String]) async throws {} }
