-- The health of an Argo CD Application is that of its resources. Argo CD no longer
-- computes it for Applications by itself (since 1.8), and an app of apps needs it to
-- wait, wave by wave, for the operator's Application before the apps' Applications.
local hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil and obj.status.health ~= nil then
  hs.status = obj.status.health.status
  if obj.status.health.message ~= nil then
    hs.message = obj.status.health.message
  end
end
return hs
