"""What campaigns do, one idea a module: the status machine (status), writing a campaign
(authoring) and a unit's campaign settings (settings). Import from the module itself."""
