// The service runs its boxes through the runtime seam (DevboxRuntime: `BoxRuntime` and its
// values); whoever builds the services hands them a runtime, so the seam's types come with
// this module.
@_exported import DevboxRuntime
