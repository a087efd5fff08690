/*
 * chat2crmThread: a patient's WhatsApp or Telegram conversation on a Lead, Contact or Case page.
 *
 * It shows the record's Chat2CRM_Message__c records (oldest first, with each reply's delivery status)
 * and lets an agent answer, attach files and close the conversation. It calls no Apex: it reads with
 * the GraphQL wire adapter and writes with lightning/uiRecordApi. chat2crm picks the agent's records up
 * through Change Data Capture, sends them, and writes the channel's delivery reports back
 * (Status__c, Error__c, Sent_At__c), which this component shows by refreshing every few seconds.
 */
import { LightningElement, api, wire } from 'lwc';
import { gql, graphql } from 'lightning/graphql';
import {
    createRecord,
    getFieldValue,
    getRecord,
    updateRecord
} from 'lightning/uiRecordApi';
import USER_ID from '@salesforce/user/Id';
import USER_NAME from '@salesforce/schema/User.Name';
import MESSAGE_OBJECT from '@salesforce/schema/Chat2CRM_Message__c';
import AGENT_NAME from '@salesforce/schema/Chat2CRM_Message__c.Agent_Name__c';
import BODY from '@salesforce/schema/Chat2CRM_Message__c.Body__c';
import CASE from '@salesforce/schema/Chat2CRM_Message__c.Case__c';
import CHANNEL from '@salesforce/schema/Chat2CRM_Message__c.Channel__c';
import CONTACT from '@salesforce/schema/Chat2CRM_Message__c.Contact__c';
import CONVERSATION_KEY from '@salesforce/schema/Chat2CRM_Message__c.Conversation_Key__c';
import DIRECTION from '@salesforce/schema/Chat2CRM_Message__c.Direction__c';
import LEAD from '@salesforce/schema/Chat2CRM_Message__c.Lead__c';
import STATUS from '@salesforce/schema/Chat2CRM_Message__c.Status__c';
import TYPE from '@salesforce/schema/Chat2CRM_Message__c.Type__c';

/** How often the thread is read again while the page is open and visible (new messages, delivery reports). */
export const POLL_MILLISECONDS = 10000;

/** The record's latest messages, newest first: the thread shows them oldest first. */
const THREAD_QUERY = gql`
    query chat2crmThread($recordId: ID) {
        uiapi {
            query {
                Chat2CRM_Message__c(
                    where: {
                        or: [
                            { Lead__c: { eq: $recordId } }
                            { Contact__c: { eq: $recordId } }
                            { Case__c: { eq: $recordId } }
                        ]
                    }
                    orderBy: { CreatedDate: { order: DESC }, Name: { order: DESC } }
                    first: 100
                ) {
                    edges {
                        node {
                            Id
                            CreatedDate {
                                value
                            }
                            Direction__c {
                                value
                            }
                            Type__c {
                                value
                            }
                            Channel__c {
                                value
                            }
                            Body__c {
                                value
                            }
                            Status__c {
                                value
                            }
                            Error__c {
                                value
                            }
                            Conversation_Key__c {
                                value
                            }
                            Agent_Name__c {
                                value
                            }
                            Lead__c {
                                value
                            }
                            Contact__c {
                                value
                            }
                            Case__c {
                                value
                            }
                        }
                    }
                }
            }
        }
    }
`;

/** What an agent's reply shows beside it, by Status__c. */
const STATUSES = {
    Draft: { icon: '✎', label: 'Draft, not sent' },
    New: { icon: '…', label: 'Sending' },
    Sent: { icon: '✓', label: 'Sent' },
    Delivered: { icon: '✓✓', label: 'Delivered' },
    Read: { icon: '✓✓', label: 'Read' },
    Failed: { icon: '!', label: 'Failed' }
};

const CHANNELS = { whatsapp: 'WhatsApp', telegram: 'Telegram' };

function valueOf(node, field) {
    return node[field] ? node[field].value : null;
}

/** One message as the template shows it (a template cannot compute, so everything is ready here). */
function toMessage(node) {
    const direction = valueOf(node, 'Direction__c');
    const status = valueOf(node, 'Status__c');
    const agent = valueOf(node, 'Agent_Name__c');
    const isClose = valueOf(node, 'Type__c') === 'Close';
    const isInbound = direction === 'Inbound';
    const shown = !isInbound && STATUSES[status];
    // the bot's history is written by chat2crm as Received; a reply written without a name is an agent's
    let author = 'Patient';
    if (!isInbound) {
        author = agent || (status === 'Received' ? 'Bot' : 'Agent');
    }
    let rowClass = isInbound ? 'message inbound' : 'message outbound';
    if (isClose) {
        rowClass = 'message event';
    }
    return {
        id: node.Id,
        isClose,
        author,
        body: valueOf(node, 'Body__c') || '',
        time: valueOf(node, 'CreatedDate'),
        rowClass,
        closedBy: agent ? `Conversation closed by ${agent}` : 'Conversation closed',
        hasStatus: Boolean(shown),
        statusIcon: shown ? shown.icon : '',
        statusLabel: shown ? shown.label : '',
        statusClass: `status status-${(status || '').toLowerCase()}`,
        error: status === 'Failed' ? valueOf(node, 'Error__c') || 'No reason given' : null,
        channel: valueOf(node, 'Channel__c'),
        conversationKey: valueOf(node, 'Conversation_Key__c'),
        leadId: valueOf(node, 'Lead__c'),
        contactId: valueOf(node, 'Contact__c'),
        caseId: valueOf(node, 'Case__c')
    };
}

/** A person-readable sentence from a Lightning Data Service or GraphQL error. */
export function reduceError(error) {
    if (Array.isArray(error)) {
        return error.map(reduceError).join(' ');
    }
    const body = error && error.body;
    const output = body && body.output;
    if (output && output.errors && output.errors.length) {
        return output.errors.map((e) => e.message).join(' ');
    }
    if (output && output.fieldErrors) {
        const messages = Object.values(output.fieldErrors)
            .flat()
            .map((e) => e.message);
        if (messages.length) {
            return messages.join(' ');
        }
    }
    if (body && body.message) {
        return body.message;
    }
    if (error && error.message) {
        return error.message;
    }
    return String(error);
}

export default class Chat2crmThread extends LightningElement {
    @api recordId;

    messages = [];
    loadError;
    actionError;
    replyText = '';
    draftId;
    attachedFiles = [];
    busy = false;
    refreshThread;
    pollTimer;
    shownCount = 0;

    get variables() {
        return { recordId: this.recordId };
    }

    @wire(graphql, { query: THREAD_QUERY, variables: '$variables' })
    wiredThread({ data, errors, refresh }) {
        if (refresh) {
            this.refreshThread = refresh;
        }
        if (errors) {
            this.loadError = reduceError(errors);
        } else if (data) {
            const edges = data.uiapi.query.Chat2CRM_Message__c.edges;
            this.messages = edges.map((edge) => toMessage(edge.node)).reverse();
            this.loadError = undefined;
        }
    }

    @wire(getRecord, { recordId: USER_ID, fields: [USER_NAME] })
    currentUser;

    connectedCallback() {
        // Delivery reports and the patient's new messages are written by chat2crm, outside this page:
        // Lightning Data Service cannot know, so the thread is read again on a timer (not while hidden).
        // eslint-disable-next-line @lwc/lwc/no-async-operation
        this.pollTimer = setInterval(() => {
            if (!document.hidden) {
                this.refresh();
            }
        }, POLL_MILLISECONDS);
    }

    disconnectedCallback() {
        clearInterval(this.pollTimer);
    }

    renderedCallback() {
        // Keep the newest message in view when messages arrive.
        if (this.messages.length !== this.shownCount) {
            this.shownCount = this.messages.length;
            const list = this.template.querySelector('[data-id="thread"]');
            if (list) {
                list.scrollTop = list.scrollHeight;
            }
        }
    }

    get hasMessages() {
        return this.messages.length > 0;
    }

    /** The latest message that names a conversation: a reply copies its channel, key and lookups. */
    get latest() {
        for (let i = this.messages.length - 1; i >= 0; i--) {
            if (this.messages[i].conversationKey) {
                return this.messages[i];
            }
        }
        return null;
    }

    get channelLabel() {
        const latest = this.latest;
        return latest ? CHANNELS[latest.channel] || latest.channel : '';
    }

    get cannotReply() {
        return this.busy || !this.latest;
    }

    get cannotClose() {
        const last = this.messages[this.messages.length - 1];
        return this.cannotReply || Boolean(last && last.isClose);
    }

    get cannotAttach() {
        return this.cannotReply || Boolean(this.draftId);
    }

    get hasDraft() {
        return Boolean(this.draftId);
    }

    get agentName() {
        const user = this.currentUser && this.currentUser.data;
        return user ? getFieldValue(user, USER_NAME) || null : null;
    }

    handleReplyChange(event) {
        this.replyText = event.detail.value || '';
        this.actionError = undefined;
    }

    /** The fields every record this component writes carries: who, which conversation, which records. */
    conversationFields(type, status) {
        const latest = this.latest;
        const fields = {
            [DIRECTION.fieldApiName]: 'Outbound',
            [TYPE.fieldApiName]: type,
            [CHANNEL.fieldApiName]: latest.channel,
            [CONVERSATION_KEY.fieldApiName]: latest.conversationKey
        };
        if (status) {
            fields[STATUS.fieldApiName] = status;
        }
        if (this.agentName) {
            fields[AGENT_NAME.fieldApiName] = this.agentName;
        }
        for (const [field, value] of [
            [LEAD, latest.leadId],
            [CONTACT, latest.contactId],
            [CASE, latest.caseId]
        ]) {
            if (value) {
                fields[field.fieldApiName] = value;
            }
        }
        return fields;
    }

    /** Files are attached to a Draft record; chat2crm sends nothing until the record becomes New. */
    async handleAttach() {
        await this.act('The draft could not be created', async () => {
            const fields = this.conversationFields('Message', 'Draft');
            fields[BODY.fieldApiName] = (this.replyText || '').trim();
            const record = await createRecord({
                apiName: MESSAGE_OBJECT.objectApiName,
                fields
            });
            this.draftId = record.id;
        });
    }

    handleUploadFinished(event) {
        const files = event.detail.files.map((file) => ({
            id: file.documentId,
            name: file.name
        }));
        this.attachedFiles = [...this.attachedFiles, ...files];
    }

    async handleSend() {
        const text = (this.replyText || '').trim();
        if (!text && this.attachedFiles.length === 0) {
            this.actionError = 'Write a reply or attach a file first.';
            return;
        }
        await this.act('The reply was not sent', async () => {
            if (this.draftId) {
                await updateRecord({
                    fields: {
                        Id: this.draftId,
                        [BODY.fieldApiName]: text,
                        [STATUS.fieldApiName]: 'New'
                    }
                });
            } else {
                const fields = this.conversationFields('Message', 'New');
                fields[BODY.fieldApiName] = text;
                await createRecord({
                    apiName: MESSAGE_OBJECT.objectApiName,
                    fields
                });
            }
            this.replyText = '';
            this.draftId = undefined;
            this.attachedFiles = [];
            await this.refresh();
        });
    }

    async handleClose() {
        await this.act('The conversation was not closed', async () => {
            await createRecord({
                apiName: MESSAGE_OBJECT.objectApiName,
                fields: this.conversationFields('Close', null)
            });
            await this.refresh();
        });
    }

    /** Runs one write with the buttons disabled, and shows its error in words. */
    async act(failure, work) {
        this.busy = true;
        this.actionError = undefined;
        try {
            await work();
        } catch (error) {
            this.actionError = `${failure}: ${reduceError(error)}`;
        } finally {
            this.busy = false;
        }
    }

    async refresh() {
        if (this.refreshThread) {
            try {
                await this.refreshThread();
            } catch (error) {
                this.loadError = reduceError(error);
            }
        }
    }
}
