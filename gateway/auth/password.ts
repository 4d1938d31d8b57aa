/**
 * MQTT passwords in `auth.mqtt[].password`: plain text or a scrypt hash
 * (docs/mqtt.md, "Password hashes"). The code is shared with the agent's
 * edge broker, so it lives in common/.
 */
export {
  SCRYPT_PREFIX,
  hashPassword,
  parseScryptHash,
  isMalformedScryptHash as isMalformedHash,
  verifyScryptPassword as verifyPassword,
  type ScryptParams,
  type ParsedScryptHash as ParsedHash,
} from '../../common/scrypt-password.js';
